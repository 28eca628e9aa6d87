import { DEFAULT_SCHEMA, type Queryable } from '@mailroom/core';
import { quoteIdentifier, toExecutor } from '@mailroom/core/internal';
import { BACKLOG_EXACT_UP_TO } from './backlog-probe.js';

/** Scheduled messages waiting for their time, as {@link scheduledCount} reads them. */
export interface ScheduledCount {
  /** Messages waiting in `outbox_scheduled`: exact up to 10,000, above it PostgreSQL's estimate (never less than 10,001). */
  rows: number;
  /** The earliest due time among them (null when none waits). */
  nextDeliverAt: Date | null;
  /**
   * Seconds the earliest one is past its due time (0 when none is due yet). Above a second or so,
   * no relay is moving scheduled messages: none runs, or it cannot reach the database.
   */
  overdueSeconds: number;
}

/** Options of {@link scheduledCount}. */
export interface ScheduledCountOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
}

/** The statement of {@link scheduledCount} for `schema` ($1: the table's name, for the estimate). */
export function scheduledCountSql(schema: string): string {
  const table = `${quoteIdentifier(schema)}.outbox_scheduled`;
  return `SELECT
      (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM ${table} LIMIT ${BACKLOG_EXACT_UP_TO + 1}) AS capped)::int AS counted,
      (SELECT c.reltuples FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass)::float8 AS estimate,
      (SELECT pg_catalog.min(s.deliver_at) FROM ${table} s) AS next_at,
      pg_catalog.statement_timestamp() AS now_at`;
}

/**
 * Counts the scheduled messages waiting in `schema` in bounded work, whatever the table holds
 * (a million timeouts included): a count that stops at 10,001 rows (above it, the larger of that
 * and the planner's estimate), and the earliest due time through the `deliver_at` index. Takes
 * any database handle (a pg Pool or client, kysely); the role needs SELECT on
 * `outbox_scheduled`. For the operator overview and the relay's `mailroom_outbox_scheduled` gauge.
 */
export async function scheduledCount(db: Queryable, options: ScheduledCountOptions = {}): Promise<ScheduledCount> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const result = await toExecutor(db).query<{ counted: number; estimate: number | null; next_at: Date | null; now_at: Date }>(scheduledCountSql(schema), [
    `${quoteIdentifier(schema)}.outbox_scheduled`,
  ]);
  const row = result.rows[0];
  const counted = row?.counted ?? 0;
  const rows = counted <= BACKLOG_EXACT_UP_TO ? counted : Math.max(counted, Math.round(row?.estimate ?? 0));
  const next = row?.next_at ?? null;
  const overdueMs = next === null || row === undefined ? 0 : Math.max(0, row.now_at.getTime() - next.getTime());
  return { rows, nextDeliverAt: next, overdueSeconds: overdueMs / 1000 };
}
