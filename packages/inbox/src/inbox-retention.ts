import { z } from 'zod/v4';
import { DEFAULT_SCHEMA, MailroomError, type Queryable } from '@mailroom/core';
import { DEFAULT_INBOX_RETENTION_MS, quoteIdentifier, toExecutor } from '@mailroom/core/internal';
import { retryHorizonMs, type RetryPolicy } from './retry-policy.js';

/** The default inbox retention window: 7 days (core's value, which a replay's age check also uses). */
export const DEFAULT_RETENTION_MS = DEFAULT_INBOX_RETENTION_MS;

// Rows per DELETE: small enough that cleanup never holds long locks.
const DEFAULT_CLEANUP_BATCH = 5000;

/** How long inbox rows are kept and how often they are cleaned up: the single source of each field's type and default. */
export const inboxRetentionSchema = z.strictObject({
  /** Rows older than this are deleted; it must not be shorter than the retry horizon. Default: 7 days. */
  windowMs: z.number().positive().default(DEFAULT_RETENTION_MS).meta({ description: 'inbox rows older than this are deleted (at least the retry horizon)' }),
  /** How often a running consumer deletes expired rows; 0 turns it off. Default: 3600000 (1 hour). */
  cleanupIntervalMs: z.number().min(0).default(3_600_000).meta({ description: 'how often a running consumer deletes expired rows; 0 turns it off' }),
  /** Rows deleted per statement, so cleanup never holds long locks. Default: 5000. */
  batchSize: z.number().int().positive().default(DEFAULT_CLEANUP_BATCH).meta({ description: 'rows deleted per statement' }),
});

/** How long inbox rows are kept, and how often they are cleaned up. Every field has a default. */
export type InboxRetention = z.input<typeof inboxRetentionSchema>;

/**
 * Throws `INVALID_CONFIG` when `windowMs` is shorter than the retry horizon of `retry`: a
 * message still being retried could otherwise meet an inbox that forgot its first copy.
 */
export function checkRetentionWindow(windowMs: number, retry: RetryPolicy = {}): void {
  const horizon = retryHorizonMs(retry);
  if (!Number.isFinite(windowMs) || windowMs < horizon) {
    throw new MailroomError(
      'INVALID_CONFIG',
      `Invalid consumer options: "retention.windowMs" (${windowMs} ms) is shorter than the retry horizon (${horizon} ms, the sum of the retry delays). Set retention.windowMs to at least ${horizon}, or shorten the retry policy.`,
      { details: { windowMs, retryHorizonMs: horizon } },
    );
  }
}

/** Options of {@link cleanupInbox}. */
export interface CleanupInboxOptions {
  /** The consumer whose rows are cleaned. */
  consumer: string;
  /** Rows older than this are deleted. */
  windowMs: number;
  /** Checked against `windowMs` first. Default: the default retry policy. */
  retry?: RetryPolicy;
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** Rows per DELETE statement. Default: 5000. */
  batchSize?: number;
}

/**
 * Deletes a consumer's inbox rows older than the window, in batches; returns how many. Every
 * built-in is schema-qualified (operators through `OPERATOR(pg_catalog.…)`, parenthesised since
 * that form takes no precedence of its own), so a function or operator planted earlier in the
 * connection's search_path changes nothing.
 */
export async function cleanupInbox(db: Queryable, options: CleanupInboxOptions): Promise<number> {
  checkRetentionWindow(options.windowMs, options.retry);
  const table = `${quoteIdentifier(options.schema ?? DEFAULT_SCHEMA)}.inbox`;
  const batch = options.batchSize ?? DEFAULT_CLEANUP_BATCH;
  const executor = toExecutor(db);
  let total = 0;
  for (;;) {
    const result = await executor.query(
      `DELETE FROM ${table} AS i USING (
         SELECT consumer, message_id FROM ${table}
         WHERE consumer OPERATOR(pg_catalog.=) $1::pg_catalog.text
           AND received_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2::pg_catalog.float8))
         LIMIT $3::pg_catalog.int8) AS expired
       WHERE i.consumer OPERATOR(pg_catalog.=) expired.consumer AND i.message_id OPERATOR(pg_catalog.=) expired.message_id`,
      [options.consumer, Math.floor(options.windowMs) / 1000, batch],
    );
    total += result.rowCount;
    if (result.rowCount < batch) return total;
  }
}
