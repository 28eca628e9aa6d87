import { DEAD_LETTER_REASON, type DeadLetterReason } from '@mailroom/core';
import { backoffDelay, type DeadLetterRecord, type Executor } from '@mailroom/core/internal';
import { writeDeadLettersIsolated } from './dead-letter-settlement.js';
import type { RowOutcome } from './publish-rows.js';
import type { OutboxRow, RelaySql } from './relay-sql.js';

/** The `source` of the dead letters the relay writes (a consumer's is its queue). */
export const RELAY_SOURCE = 'relay';

/** The retry and dead-letter rules a settlement follows (from the relay's options). */
export interface SettlementPolicy {
  /** Attempts after which a row the broker keeps returning becomes a dead letter. */
  maxUnroutableAttempts: number;
  retryInitialDelayMs: number;
  retryMaxDelayMs: number;
}

/** A dead letter the settlement wrote, for the events and the metrics once it committed. */
export interface SettledDeadLetter {
  messageId: string;
  reason: DeadLetterReason;
  error: string;
}

/**
 * What one batch's settlement wrote inside the batch transaction. Nothing in it is counted or
 * announced until that transaction committed.
 */
export interface Settlement {
  claimed: number;
  /** Rows confirmed and deleted. */
  published: number;
  returned: number;
  nacked: number;
  failed: number;
  /** Rows left for a retry (dead letters that could not be written included). */
  retried: number;
  /** The first retry error, for the log. */
  firstRetryError: string | undefined;
  deadLetters: SettledDeadLetter[];
  /** Rows that should have become dead letters but whose write failed: left in the outbox. */
  deadLetterWriteFailures: Array<{ messageId: string; error: string }>;
  /** Seconds from each published row's insert to its confirm. */
  latencies: number[];
  /** Seconds from each published scheduled row's due time to its confirm (its lateness). */
  lateness: number[];
}

/**
 * Settles a published batch inside its transaction so that no row can undo another: the dead
 * letters are written first, under a savepoint (see dead-letter-settlement.ts); then one
 * statement pushes the others back with a backoff delay, a failed dead-letter write among them
 * (its error in `last_error`, tried again at its next attempt). The ids to delete (the confirmed
 * rows, `published`, apart from the rows whose dead letter was written, `removed`: only the first
 * go to the archive) are returned: the caller deletes them in the message that commits (see
 * relay-batch.ts).
 */
export async function settleBatch(
  db: Executor,
  schema: string,
  sql: RelaySql,
  rows: readonly OutboxRow[],
  outcomes: readonly RowOutcome[],
  policy: SettlementPolicy,
): Promise<{ settlement: Settlement; removed: string[]; published: string[] }> {
  const settlement: Settlement = {
    claimed: rows.length,
    published: 0,
    returned: 0,
    nacked: 0,
    failed: 0,
    retried: 0,
    firstRetryError: undefined,
    deadLetters: [],
    deadLetterWriteFailures: [],
    latencies: [],
    lateness: [],
  };
  const removed: string[] = [];
  const published: string[] = [];
  const retry = { ids: [] as string[], delays: [] as number[], errors: [] as string[] };
  const pushBack = (row: OutboxRow, error: string): void => {
    retry.ids.push(row.id);
    // Jitter, so rows that failed together do not come back together.
    retry.delays.push(backoffDelay({ initialMs: policy.retryInitialDelayMs, maxMs: policy.retryMaxDelayMs, jitter: 0.2 }, row.attempts + 1));
    retry.errors.push(error);
  };
  const dead: Array<{ row: OutboxRow; record: DeadLetterRecord }> = [];
  const now = Date.now();
  const failedAt = new Date(now);
  rows.forEach((row, i) => {
    const outcome = outcomes[i] as RowOutcome;
    if (outcome.kind === 'skipped') return;
    if (outcome.kind === 'confirmed') {
      published.push(row.id);
      settlement.published++;
      settlement.latencies.push(Math.max(0, now - row.created_ms) / 1000);
      if (typeof row.deliver_ms === 'number') settlement.lateness.push(Math.max(0, now - row.deliver_ms) / 1000);
      return;
    }
    if (outcome.kind === 'returned') settlement.returned++;
    else if (outcome.kind === 'nacked') settlement.nacked++;
    else if (outcome.kind === 'failed') settlement.failed++;
    const attempts = row.attempts + 1;
    const reason = deadLetterReason(outcome, attempts, policy);
    if (reason === undefined) {
      pushBack(row, outcome.error);
      return;
    }
    dead.push({
      row,
      record: {
        messageId: row.message_id,
        source: RELAY_SOURCE,
        reason,
        error: outcome.error,
        attempts,
        failedAt,
        type: row.type,
        exchange: row.exchange,
        routingKey: row.routing_key,
        key: row.key,
        headersJson: row.headers,
        payloadJson: row.payload,
        body: null,
      },
    });
  });
  const { written, failed } = await writeDeadLettersIsolated(
    db,
    schema,
    dead.map((d) => d.record),
  );
  const writtenIds = new Set(written.map((r) => r.messageId));
  for (const { row, record } of dead) {
    if (!writtenIds.has(record.messageId)) continue;
    removed.push(row.id);
    settlement.deadLetters.push({ messageId: record.messageId, reason: record.reason as DeadLetterReason, error: record.error ?? '' });
  }
  for (const { record, error } of failed) {
    const row = dead.find((d) => d.record === record)?.row as OutboxRow;
    pushBack(row, `cannot write the dead letter (${record.reason}: ${record.error ?? ''}): ${error}`);
    settlement.deadLetterWriteFailures.push({ messageId: record.messageId, error });
  }
  if (retry.ids.length > 0) await db.query(sql.retry, [retry.ids, retry.delays, retry.errors]);
  settlement.retried = retry.ids.length;
  settlement.firstRetryError = retry.errors[0];
  return { settlement, removed, published };
}

/** A row that can never be published becomes a dead letter; anything else is retried. */
function deadLetterReason(outcome: Exclude<RowOutcome, { kind: 'confirmed' | 'skipped' }>, attempts: number, policy: SettlementPolicy): DeadLetterReason | undefined {
  if (outcome.kind === 'overLimit') return DEAD_LETTER_REASON.oversized;
  if (outcome.kind === 'unpublishable') return DEAD_LETTER_REASON.unpublishable;
  if (outcome.kind === 'returned' && attempts >= policy.maxUnroutableAttempts) return DEAD_LETTER_REASON.unroutable;
  return undefined;
}
