import { DEFAULT_SCHEMA, MailroomError, type Queryable } from '@mailroom/core';
import { toExecutor } from '@mailroom/core/internal';
import { shortJson } from './saga-errors.js';
import { sagaTables } from './saga-sql.js';

/** Options of {@link cleanupSagas}. */
export interface CleanupSagasOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /**
   * Remove instances that ended (completed or failed) at least this many milliseconds ago. Keep
   * it longer than the inbox retention (7 days by default) and than any message of an ended
   * instance may still arrive: a starting message redelivered after its instance is gone starts
   * a new instance. Default: 30 days.
   */
  olderThanMs?: number;
  /** Instances removed per statement (each its own transaction on a pool). Default: 1000. */
  batchSize?: number;
  /** Count the instances it would remove (ended before the cutoff, locked or not) and remove nothing. Default: false. */
  dryRun?: boolean;
}

/** The default retention of ended instances: 30 days. */
export const DEFAULT_SAGA_RETENTION_MS = 30 * 24 * 3600 * 1000;

/**
 * Removes ended instances (completed or failed) older than the retention, with their history,
 * in batches; running instances are never touched, and a row a step holds locked is skipped (the
 * next run takes it). Returns how many instances it removed (with `dryRun`, would remove). Call it from a timer (hourly, say)
 * in one of the services that run the saga: the consumer's role has the grants it needs.
 */
export async function cleanupSagas(db: Queryable, options: CleanupSagasOptions = {}): Promise<number> {
  const { sagas, history } = sagaTables(options.schema ?? DEFAULT_SCHEMA);
  const olderThanMs = options.olderThanMs ?? DEFAULT_SAGA_RETENTION_MS;
  const batchSize = options.batchSize ?? 1000;
  if (typeof olderThanMs !== 'number' || !Number.isFinite(olderThanMs) || olderThanMs < 0) {
    throw new MailroomError('INVALID_CONFIG', `olderThanMs must be a number of milliseconds, at least 0 (got ${shortJson(olderThanMs)}).`);
  }
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 100_000) {
    throw new MailroomError('INVALID_CONFIG', `batchSize must be an integer from 1 to 100000 (got ${shortJson(batchSize)}).`);
  }
  const executor = toExecutor(db);
  const EQ = 'OPERATOR(pg_catalog.=)';
  if (options.dryRun === true) {
    const counted = await executor.query<{ n: string }>(
      `SELECT pg_catalog.count(*)::pg_catalog.int8 AS n FROM ${sagas}
        WHERE completed_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) ($1::pg_catalog.float8 OPERATOR(pg_catalog.*) '1 millisecond'::pg_catalog.interval))`,
      [olderThanMs],
    );
    return Number(counted.rows[0]?.n ?? 0);
  }
  let removed = 0;
  for (;;) {
    const result = await executor.query<{ n: string }>(
      `WITH doomed AS (
         SELECT saga, id FROM ${sagas}
          WHERE completed_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) ($1::pg_catalog.float8 OPERATOR(pg_catalog.*) '1 millisecond'::pg_catalog.interval))
          ORDER BY completed_at LIMIT $2::pg_catalog.int8 FOR UPDATE SKIP LOCKED),
       gone AS (DELETE FROM ${sagas} s USING doomed d WHERE s.saga ${EQ} d.saga AND s.id ${EQ} d.id RETURNING s.saga, s.id),
       forgotten AS (DELETE FROM ${history} h USING gone g WHERE h.saga ${EQ} g.saga AND h.instance_id ${EQ} g.id)
       SELECT pg_catalog.count(*)::pg_catalog.int8 AS n FROM gone`,
      [olderThanMs, batchSize],
    );
    const n = Number(result.rows[0]?.n ?? 0);
    removed += n;
    if (n < batchSize) return removed;
  }
}
