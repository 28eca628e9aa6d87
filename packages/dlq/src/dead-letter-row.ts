import { STORED_CHANGES_HEADER, type DeadLetterRecord } from '@mailroom/core/internal';
import type { DeadLetter, NewDeadLetter } from './dead-letter.js';
import { replayTargetOf } from './replay-target.js';

/** A `dead_letters` row as the store's queries select it (see {@link DEAD_LETTER_COLUMNS}). */
export interface DeadLetterRow {
  id: string;
  message_id: string;
  source: string;
  reason: string;
  error: string | null;
  attempts: number;
  first_failed_at: Date;
  last_failed_at: Date;
  type: string | null;
  exchange: string | null;
  routing_key: string | null;
  key: string | null;
  headers: Record<string, unknown> | null;
  payload: unknown;
  body: Buffer | null;
  fingerprint: string;
  replayed_at: Date | null;
}

/** The select list that yields a {@link DeadLetterRow} (ids as text: bigints do not fit a number). */
export const DEAD_LETTER_COLUMNS = `id::text AS id, message_id::text AS message_id, source, reason, error, attempts, first_failed_at, last_failed_at,
  type, exchange, routing_key, key, headers, payload, body, fingerprint, replayed_at`;

/** The headers as stored, and the sink's list of changes kept among them (taken out). */
function splitChanges(stored: Record<string, unknown> | null): { headers: Record<string, unknown>; changes: string[] } {
  if (stored === null) return { headers: {}, changes: [] };
  const { [STORED_CHANGES_HEADER]: noted, ...headers } = stored;
  const changes = Array.isArray(noted) ? noted.filter((c): c is string => typeof c === 'string') : [];
  return { headers, changes };
}

/** A row as the store's callers see it, with where a replay of it would go. */
export function toDeadLetter(row: DeadLetterRow): DeadLetter {
  const { headers, changes } = splitChanges(row.headers);
  const payload = row.payload ?? null;
  return {
    id: row.id,
    messageId: row.message_id,
    source: row.source,
    reason: row.reason,
    error: row.error,
    attempts: Number(row.attempts),
    firstFailedAt: new Date(row.first_failed_at),
    lastFailedAt: new Date(row.last_failed_at),
    type: row.type,
    exchange: row.exchange,
    routingKey: row.routing_key,
    key: row.key,
    headers,
    payload,
    body: row.body,
    fingerprint: row.fingerprint,
    replayedAt: row.replayed_at === null ? null : new Date(row.replayed_at),
    changes,
    replayTarget: replayTargetOf({ ...row, routingKey: row.routing_key, payload, changes }),
  };
}

/** The headers to store: a list of changes goes with them, under core's reserved name (any earlier one replaced). */
function withChanges(headers: Record<string, unknown>, changes: readonly string[] | undefined): Record<string, unknown> {
  const { [STORED_CHANGES_HEADER]: _earlier, ...rest } = headers;
  return changes === undefined || changes.length === 0 ? rest : { ...rest, [STORED_CHANGES_HEADER]: changes };
}

/**
 * A new dead letter as core's `writeDeadLetters` takes it, defaults filled in. A payload that is
 * undefined means the body was not JSON: the raw body is kept instead.
 */
export function toDeadLetterRecord(deadLetter: NewDeadLetter): DeadLetterRecord {
  const isJson = deadLetter.payload !== undefined;
  const body = deadLetter.body;
  return {
    messageId: deadLetter.messageId,
    source: deadLetter.source,
    reason: deadLetter.reason,
    error: deadLetter.error ?? null,
    attempts: deadLetter.attempts ?? 0,
    failedAt: deadLetter.failedAt ?? new Date(),
    type: deadLetter.type ?? null,
    exchange: deadLetter.exchange ?? null,
    routingKey: deadLetter.routingKey ?? null,
    key: deadLetter.key ?? null,
    headersJson: JSON.stringify(withChanges(deadLetter.headers ?? {}, deadLetter.changes)),
    payloadJson: isJson ? JSON.stringify(deadLetter.payload) : null,
    body: isJson || body === undefined || body === null ? null : Buffer.from(body),
  };
}
