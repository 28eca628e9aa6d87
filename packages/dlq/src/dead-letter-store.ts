import {
  DEFAULT_SCHEMA,
  MailroomError,
  WIRE_HEADERS,
  failureFingerprint,
  inTransaction,
  isUuid,
  quoteIdentifier,
  toExecutor,
  type Executor,
  type MetricsRegistry,
  type OutgoingMessage,
  type Queryable,
} from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import type { DeadLetterReason } from './dead-letter-headers.js';

/** A stored dead letter. */
export interface DeadLetter {
  /** The row id (a bigint, as text). */
  id: string;
  /** The message id; a replay publishes the message again under this id. */
  messageId: string;
  /** Who gave up: the consumer's queue, or `relay`. */
  source: string;
  /** Why: a {@link DeadLetterReason} (free text for rows written by other tools). */
  reason: string;
  /** The last error, secret-free. */
  error: string | null;
  /** Delivery or publish attempts made before giving up. */
  attempts: number;
  /** First time this message was dead-lettered from this source. */
  firstFailedAt: Date;
  /** Last time. */
  lastFailedAt: Date;
  /** The message type, when known. */
  type: string | null;
  /** The exchange it was published to. */
  exchange: string | null;
  /** The routing key it was published with. */
  routingKey: string | null;
  /** The ordering key. */
  key: string | null;
  /** The message headers as received. */
  headers: Record<string, unknown>;
  /** The JSON payload, or null when the body was not JSON (see `body`). */
  payload: unknown;
  /** The raw body when it was not JSON; null otherwise. */
  body: Buffer | null;
  /** The failure group. */
  fingerprint: string;
  /** When it was last replayed; null if never (or if it failed again since). */
  replayedAt: Date | null;
}

/** A dead letter to record (see {@link DeadLetterStore.record}). */
export interface NewDeadLetter {
  /** A UUID; derive one with `deriveMessageId` when the message had none. */
  messageId: string;
  /** The consumer's queue, or `relay`. */
  source: string;
  /** Why it is given up on. */
  reason: DeadLetterReason | (string & {});
  /** The error text; keep it secret-free. Default: none. */
  error?: string | null;
  /** Attempts made. Default: 0. */
  attempts?: number;
  /** When it failed. Default: now. */
  failedAt?: Date;
  /** Message type. Default: unknown (null). */
  type?: string | null;
  /** Exchange. Default: unknown (null). */
  exchange?: string | null;
  /** Routing key. Default: unknown (null). */
  routingKey?: string | null;
  /** Ordering key. Default: none. */
  key?: string | null;
  /** Headers. Default: `{}`. */
  headers?: Record<string, unknown>;
  /** The JSON payload. Leave undefined when the body is not JSON and pass `body`. */
  payload?: unknown;
  /** The raw body, stored when `payload` is undefined. Default: none. */
  body?: Uint8Array | null;
}

/** Filters of {@link DeadLetterStore.list}. */
export interface ListDeadLettersOptions {
  /** Only this source (a queue name, or `relay`). Default: all. */
  source?: string;
  /** Only this message type. Default: all. */
  type?: string;
  /** Only this failure group (fingerprint). Default: all. */
  group?: string;
  /** Only dead letters whose last failure is at or after this time. Default: any time. */
  since?: Date;
  /** Leave out rows already replayed. Default: false (they are listed). */
  pendingOnly?: boolean;
  /** At most this many rows, newest failure first. Default: 100. */
  limit?: number;
}

/** One failure group: dead letters with the same fingerprint. */
export interface DeadLetterGroup {
  /** The fingerprint: replay or discard the whole group with it. */
  fingerprint: string;
  /** The source of the group's failures. */
  source: string;
  /** The reason. */
  reason: string;
  /** The message type (the most common one, when several share the fingerprint). */
  type: string | null;
  /** How many dead letters. */
  count: number;
  /** How many have not been replayed. */
  pending: number;
  /** Earliest first failure. */
  firstFailedAt: Date;
  /** Latest failure. */
  lastFailedAt: Date;
  /** One error text of the group. */
  sampleError: string | null;
}

/** Which dead letters a replay or discard acts on: row ids / message ids, or a whole group. */
export interface DeadLetterSelection {
  /** Row ids (digits) or message ids (UUIDs). */
  ids?: readonly string[];
  /** A failure group's fingerprint. */
  group?: string;
}

/** Options of {@link DeadLetterStore.replay}. */
export interface ReplayOptions extends DeadLetterSelection {
  /** Say what would be replayed, change nothing. Default: false. */
  dryRun?: boolean;
  /**
   * Replay even when a message is older than the shortest inbox retention window: a consumer
   * that already handled it may have forgotten that and handle it again. Default: false.
   */
  force?: boolean;
}

/** A dead letter a replay left alone, and why. */
export interface SkippedReplay {
  /** The row id. */
  id: string;
  /** The message id. */
  messageId: string;
  /** Why it was not replayed. */
  why: string;
}

/** What {@link DeadLetterStore.replay} did (or would do, with `dryRun`). */
export interface ReplayResult {
  /** How many messages went back into the outbox (or would). Loop while it is not zero. */
  count: number;
  /** The message ids replayed. */
  messageIds: string[];
  /** Rows left alone. */
  skipped: SkippedReplay[];
  /** True for a dry run. */
  dryRun: boolean;
}

/** Options of {@link createDeadLetterStore}. */
export interface DeadLetterStoreOptions {
  /** A pg Pool (or Client) or a kysely instance. */
  db: Queryable;
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
}

/** The dead-letter store: the API behind `mailroom dlq`. */
export interface DeadLetterStore {
  /**
   * Records a dead letter, idempotently by (source, message id): a second record of the same
   * message updates the reason, error, attempts and last failure, and keeps the first failure.
   * Pass an open transaction as `tx` to record it atomically with other work.
   */
  record(deadLetter: NewDeadLetter, tx?: Queryable): Promise<void>;
  /** Lists dead letters, newest failure first. */
  list(options?: ListDeadLettersOptions): Promise<DeadLetter[]>;
  /** One dead letter by row id or message id (the newest row when several sources have it). */
  show(id: string): Promise<DeadLetter | undefined>;
  /** Failure groups with their counts, largest first. */
  groups(): Promise<DeadLetterGroup[]>;
  /**
   * Puts dead letters back into the outbox in one transaction, keeping their message ids, and
   * marks them replayed. Refuses (`REPLAY_REFUSED`) messages older than the shortest inbox
   * retention window unless `force`. Skips rows without a JSON payload or type, and rows whose
   * message is still waiting in the outbox from an earlier replay.
   */
  replay(options: ReplayOptions): Promise<ReplayResult>;
  /** Deletes dead letters; returns how many. */
  discard(selection: DeadLetterSelection): Promise<number>;
  /**
   * Adds the gauge `mailroom_dead_letters{group,source,reason}` (dead letters not replayed, by
   * failure group) to `registry`; it queries the store each time the registry renders.
   */
  registerMetrics(registry: MetricsRegistry): void;
}

interface Row {
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

const COLUMNS = `id::text AS id, message_id::text AS message_id, source, reason, error, attempts, first_failed_at, last_failed_at,
  type, exchange, routing_key, key, headers, payload, body, fingerprint, replayed_at`;

function toDeadLetter(row: Row): DeadLetter {
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
    headers: row.headers ?? {},
    payload: row.payload ?? null,
    body: row.body,
    fingerprint: row.fingerprint,
    replayedAt: row.replayed_at === null ? null : new Date(row.replayed_at),
  };
}

function selectionWhere(selection: DeadLetterSelection, params: unknown[]): string {
  const ids = selection.ids ?? [];
  const hasGroup = selection.group !== undefined && selection.group !== '';
  if (ids.length === 0 && !hasGroup) {
    throw new MailroomError('INVALID_CONFIG', 'Say which dead letters: give ids (row ids or message ids) or a group fingerprint.');
  }
  const rowIds: string[] = [];
  const messageIds: string[] = [];
  for (const id of ids) {
    if (/^\d{1,18}$/.test(id)) rowIds.push(id);
    else if (isUuid(id)) messageIds.push(id);
    else throw new MailroomError('INVALID_CONFIG', `${JSON.stringify(id)} is neither a dead-letter row id (digits) nor a message id (UUID).`);
  }
  const parts: string[] = [];
  if (rowIds.length > 0) {
    params.push(rowIds);
    parts.push(`id = ANY($${params.length}::bigint[])`);
  }
  if (messageIds.length > 0) {
    params.push(messageIds);
    parts.push(`message_id = ANY($${params.length}::uuid[])`);
  }
  if (hasGroup) {
    params.push(selection.group);
    parts.push(`fingerprint = $${params.length}`);
  }
  return parts.join(' OR ');
}

// Replay only re-sends what a producer sent: headers mailroom or the broker added are dropped.
function replayHeaders(headers: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower.startsWith('x-mailroom-') || lower === 'x-death' || lower.startsWith('x-first-death-') || lower.startsWith('x-last-death-')) continue;
    if (typeof value === 'string') out[name] = value;
  }
  return out;
}

function occurredAt(deadLetter: DeadLetter): Date {
  const raw = deadLetter.headers[WIRE_HEADERS.occurredAt];
  const parsed = typeof raw === 'string' ? new Date(raw) : undefined;
  return parsed !== undefined && !Number.isNaN(parsed.getTime()) ? parsed : deadLetter.firstFailedAt;
}

function formatDuration(ms: number): string {
  if (ms >= 86_400_000) return `${(ms / 86_400_000).toFixed(1)} days`;
  if (ms >= 3_600_000) return `${(ms / 3_600_000).toFixed(1)} hours`;
  if (ms >= 60_000) return `${(ms / 60_000).toFixed(1)} minutes`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Opens the dead-letter store in `schema`. Nothing is queried until a method is called. */
export function createDeadLetterStore(options: DeadLetterStoreOptions): DeadLetterStore {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const q = quoteIdentifier(schema);
  const table = `${q}.dead_letters`;
  const db = options.db;

  async function shortestRetention(tx: Executor): Promise<{ consumer: string; retentionMs: number } | undefined> {
    const result = await tx.query<{ consumer: string; retention_ms: string }>(
      `SELECT consumer, retention_ms::text AS retention_ms FROM ${q}.inbox_consumers ORDER BY retention_ms ASC LIMIT 1`,
    );
    const row = result.rows[0];
    return row === undefined ? undefined : { consumer: row.consumer, retentionMs: Number(row.retention_ms) };
  }

  const store: DeadLetterStore = {
    async record(dl, tx) {
      const executor = toExecutor(tx ?? db);
      const isJson = dl.payload !== undefined;
      const fingerprint = failureFingerprint({ source: dl.source, reason: dl.reason, type: dl.type ?? null, error: dl.error ?? null });
      // A message dead-lettered again after a replay is pending again: replayed_at is cleared
      // when this failure is newer than the replay.
      await executor.query(
        `INSERT INTO ${table} AS d (message_id, source, reason, error, attempts, first_failed_at, last_failed_at, type, exchange,
           routing_key, key, headers, payload, body, fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13, $14)
         ON CONFLICT (source, message_id) DO UPDATE SET
           reason = excluded.reason, error = excluded.error, attempts = GREATEST(d.attempts, excluded.attempts),
           first_failed_at = LEAST(d.first_failed_at, excluded.first_failed_at),
           last_failed_at = GREATEST(d.last_failed_at, excluded.last_failed_at),
           type = COALESCE(excluded.type, d.type), exchange = COALESCE(excluded.exchange, d.exchange),
           routing_key = COALESCE(excluded.routing_key, d.routing_key), key = COALESCE(excluded.key, d.key),
           headers = excluded.headers, payload = excluded.payload, body = excluded.body, fingerprint = excluded.fingerprint,
           replayed_at = CASE WHEN d.replayed_at IS NOT NULL AND excluded.last_failed_at > d.replayed_at THEN NULL ELSE d.replayed_at END`,
        [
          dl.messageId,
          dl.source,
          dl.reason,
          dl.error ?? null,
          dl.attempts ?? 0,
          dl.failedAt ?? new Date(),
          dl.type ?? null,
          dl.exchange ?? null,
          dl.routingKey ?? null,
          dl.key ?? null,
          JSON.stringify(dl.headers ?? {}),
          isJson ? JSON.stringify(dl.payload) : null,
          isJson ? null : dl.body === undefined || dl.body === null ? null : Buffer.from(dl.body),
          fingerprint,
        ],
      );
    },

    async list(filter = {}) {
      const params: unknown[] = [];
      const where: string[] = [];
      const add = (sql: string, value: unknown): void => {
        params.push(value);
        where.push(sql.replace('?', `$${params.length}`));
      };
      if (filter.source !== undefined) add('source = ?', filter.source);
      if (filter.type !== undefined) add('type = ?', filter.type);
      if (filter.group !== undefined) add('fingerprint = ?', filter.group);
      if (filter.since !== undefined) add('last_failed_at >= ?', filter.since);
      if (filter.pendingOnly === true) where.push('replayed_at IS NULL');
      params.push(filter.limit ?? 100);
      const result = await toExecutor(db).query<Row>(
        `SELECT ${COLUMNS} FROM ${table} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
         ORDER BY last_failed_at DESC, id DESC LIMIT $${params.length}`,
        params,
      );
      return result.rows.map(toDeadLetter);
    },

    async show(id) {
      const params: unknown[] = [];
      const where = selectionWhere({ ids: [id] }, params);
      const result = await toExecutor(db).query<Row>(`SELECT ${COLUMNS} FROM ${table} WHERE ${where} ORDER BY last_failed_at DESC LIMIT 1`, params);
      const row = result.rows[0];
      return row === undefined ? undefined : toDeadLetter(row);
    },

    async groups() {
      const result = await toExecutor(db).query<{
        fingerprint: string;
        source: string;
        reason: string;
        type: string | null;
        count: string;
        pending: string;
        first_failed_at: Date;
        last_failed_at: Date;
        sample_error: string | null;
      }>(
        `SELECT fingerprint, min(source) AS source, min(reason) AS reason, mode() WITHIN GROUP (ORDER BY type) AS type,
           count(*)::text AS count, count(*) FILTER (WHERE replayed_at IS NULL)::text AS pending,
           min(first_failed_at) AS first_failed_at, max(last_failed_at) AS last_failed_at, min(error) AS sample_error
         FROM ${table} GROUP BY fingerprint ORDER BY count(*) DESC, max(last_failed_at) DESC`,
      );
      return result.rows.map((r) => ({
        fingerprint: r.fingerprint,
        source: r.source,
        reason: r.reason,
        type: r.type,
        count: Number(r.count),
        pending: Number(r.pending),
        firstFailedAt: new Date(r.first_failed_at),
        lastFailedAt: new Date(r.last_failed_at),
        sampleError: r.sample_error,
      }));
    },

    async replay(replayOptions) {
      const params: unknown[] = [];
      const where = selectionWhere(replayOptions, params);
      const dryRun = replayOptions.dryRun === true;
      return inTransaction(db, async (tx) => {
        // FOR UPDATE: two operators replaying the same rows at once take turns; the second then
        // finds the message waiting in the outbox and skips it.
        const rows = await tx.query<Row>(`SELECT ${COLUMNS} FROM ${table} WHERE ${where} ORDER BY id ${dryRun ? '' : 'FOR UPDATE'}`, params);
        const deadLetters = rows.rows.map(toDeadLetter);
        const skipped: SkippedReplay[] = [];
        for (const id of replayOptions.ids ?? []) {
          if (!deadLetters.some((dl) => dl.id === id || dl.messageId === id.toLowerCase())) skipped.push({ id, messageId: '', why: 'no such dead letter' });
        }
        const candidates: DeadLetter[] = [];
        for (const dl of deadLetters) {
          if (dl.type === null) skipped.push({ id: dl.id, messageId: dl.messageId, why: 'the message type is unknown' });
          else if (dl.payload === null) skipped.push({ id: dl.id, messageId: dl.messageId, why: 'the body is not JSON, so it cannot go through the outbox' });
          else if (dl.exchange === null || dl.routingKey === null) skipped.push({ id: dl.id, messageId: dl.messageId, why: 'the exchange or routing key is unknown' });
          else candidates.push(dl);
        }
        // The same message id twice in one replay (it failed in two consumers) is sent once.
        const unique = new Map<string, DeadLetter>();
        for (const dl of candidates) {
          if (unique.has(dl.messageId)) skipped.push({ id: dl.id, messageId: dl.messageId, why: 'the same message is replayed from another row' });
          else unique.set(dl.messageId, dl);
        }
        const pending = await tx.query<{ message_id: string }>(`SELECT message_id::text AS message_id FROM ${q}.outbox WHERE message_id = ANY($1::uuid[])`, [
          [...unique.keys()],
        ]);
        for (const row of pending.rows) {
          const dl = unique.get(row.message_id);
          if (dl === undefined) continue;
          unique.delete(row.message_id);
          skipped.push({ id: dl.id, messageId: dl.messageId, why: 'it is still waiting in the outbox from an earlier replay' });
        }
        const toReplay = [...unique.values()];
        if (replayOptions.force !== true && toReplay.length > 0) {
          const retention = await shortestRetention(tx);
          if (retention !== undefined) {
            const now = Date.now();
            const tooOld = toReplay.filter((dl) => now - occurredAt(dl).getTime() > retention.retentionMs);
            if (tooOld.length > 0) {
              const oldest = Math.max(...tooOld.map((dl) => now - occurredAt(dl).getTime()));
              throw new MailroomError(
                'REPLAY_REFUSED',
                `${tooOld.length} dead letter(s) (${tooOld.slice(0, 5).map((dl) => dl.id).join(', ')}${tooOld.length > 5 ? ', …' : ''}) are older than the inbox retention window of consumer "${retention.consumer}" (${formatDuration(retention.retentionMs)}; the oldest is ${formatDuration(oldest)} old). A consumer that already handled such a message may have forgotten it and would handle it again. Replay with --force (force: true) if the handlers are idempotent or the message never reached them.`,
                { details: { ids: tooOld.map((dl) => dl.id), retentionMs: retention.retentionMs, consumer: retention.consumer } },
              );
            }
          }
        }
        const messageIds = toReplay.map((dl) => dl.messageId);
        if (!dryRun && toReplay.length > 0) {
          const messages: OutgoingMessage[] = toReplay.map((dl) => ({
            messageId: dl.messageId,
            type: dl.type as string,
            key: dl.key,
            headers: replayHeaders(dl.headers),
            payload: dl.payload,
            occurredAt: occurredAt(dl),
            exchange: dl.exchange as string,
            routingKey: dl.routingKey as string,
          }));
          await enqueue(tx, messages, { schema });
          await tx.query(`UPDATE ${table} SET replayed_at = now() WHERE id = ANY($1::bigint[])`, [toReplay.map((dl) => dl.id)]);
        }
        return { count: toReplay.length, messageIds, skipped, dryRun };
      });
    },

    registerMetrics(registry) {
      registry.gauge('mailroom_dead_letters', 'Dead letters not replayed, by failure group.', async () =>
        (await store.groups()).map((g) => ({ labels: { group: g.fingerprint, source: g.source, reason: g.reason }, value: g.pending })),
      );
    },

    async discard(selection) {
      const params: unknown[] = [];
      const where = selectionWhere(selection, params);
      const result = await toExecutor(db).query(`DELETE FROM ${table} WHERE ${where}`, params);
      return result.rowCount;
    },
  };
  return store;
}
