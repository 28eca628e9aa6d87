import { setTimeout as sleep } from 'node:timers/promises';
import type { PgQueryable } from '@mailroom/core';
import { quoteIdentifier } from '@mailroom/core/internal';

/** Outbox rows waiting and the age in seconds of the oldest one. */
export interface Backlog {
  rows: number;
  oldestAgeSeconds: number;
}

/** Up to this many rows the backlog is counted exactly; above, it is PostgreSQL's estimate. */
export const BACKLOG_EXACT_UP_TO = 10_000;

/** How long `/metrics` reuses a backlog reading, in ms: scrapes and the two gauges share one query. */
export const BACKLOG_CACHE_MS = 5_000;

/** How long a metrics scrape waits for the backlog query (a database that hangs must not hang /metrics). */
export const BACKLOG_PROBE_TIMEOUT_MS = 2_000;

/**
 * The backlog in bounded work, whatever the outbox holds: a count that stops at
 * {@link BACKLOG_EXACT_UP_TO} + 1 rows (above it, the larger of that and the planner's estimate
 * `pg_class.reltuples`, kept current by autovacuum), and the oldest row by id through the
 * primary key. `count(*)` over the whole table would read every row of a large backlog at every
 * scrape, exactly when the outbox is least healthy.
 */
export function backlogSql(schema: string): string {
  const outbox = `${quoteIdentifier(schema)}.outbox`;
  return `SELECT
      (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM ${outbox} LIMIT ${BACKLOG_EXACT_UP_TO + 1}) AS capped)::int AS counted,
      (SELECT c.reltuples FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass)::float8 AS estimate,
      coalesce(extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) (SELECT o.created_at FROM ${outbox} o ORDER BY o.id LIMIT 1)), 0)::float8 AS oldest_age`;
}

/** Reads the backlog once (see {@link backlogSql}). */
export async function readBacklog(db: PgQueryable, schema: string, sql: string): Promise<Backlog> {
  const result = await db.query(sql, [`${quoteIdentifier(schema)}.outbox`]);
  const row = result.rows[0] as { counted: number; estimate: number | null; oldest_age: number } | undefined;
  const counted = row?.counted ?? 0;
  const rows = counted <= BACKLOG_EXACT_UP_TO ? counted : Math.max(counted, Math.round(row?.estimate ?? 0));
  return { rows, oldestAgeSeconds: row?.oldest_age ?? 0 };
}

const TIMED_OUT = Symbol('timed out');

/**
 * A backlog reader for the metrics gauges: one query per {@link BACKLOG_CACHE_MS} however many
 * scrapes and gauges ask, shared while in flight, and given up after
 * {@link BACKLOG_PROBE_TIMEOUT_MS} (the gauges are then left out of that scrape).
 */
export function cachedBacklog<T = Backlog>(read: () => Promise<T>): () => Promise<T> {
  let cached: { at: number; value: T } | undefined;
  let inFlight: Promise<T> | undefined;
  return async () => {
    if (cached !== undefined && Date.now() - cached.at < BACKLOG_CACHE_MS) return cached.value;
    inFlight ??= read().then(
      (value) => {
        cached = { at: Date.now(), value };
        inFlight = undefined;
        return value;
      },
      (error: unknown) => {
        inFlight = undefined;
        throw error;
      },
    );
    // The query goes on after a timeout (and fills the cache if it answers); nobody waits for it.
    inFlight.catch(() => undefined);
    const winner = await Promise.race([inFlight, sleep(BACKLOG_PROBE_TIMEOUT_MS, TIMED_OUT, { ref: false })]);
    if (winner === TIMED_OUT) throw new Error(`the backlog query took more than ${BACKLOG_PROBE_TIMEOUT_MS} ms`);
    return winner;
  };
}
