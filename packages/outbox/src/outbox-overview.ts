import { DEFAULT_SCHEMA, type Queryable } from '@mailroom/core';
import { quoteIdentifier, toExecutor, validateIdentifier } from '@mailroom/core/internal';
import { BACKLOG_EXACT_UP_TO, backlogSql } from './backlog-probe.js';
import { RELAY_ASLEEP_LOCK_CLASS, memberLockClass, partitionLockClass } from './names.js';
import { scheduledCount, type ScheduledCount } from './scheduled-count.js';

/** A relay instance as its database sessions show it. */
export interface RelayInstance {
  /** Its name (`MAILROOM_RELAY_NAME`, the connections' `application_name`), or `pid <n>` when PostgreSQL hides it. */
  name: string;
  /** True when it holds a membership lease: a relay in ordering mode. */
  ordering: boolean;
  /** The key-space partitions it leases now (ordering mode), in order. */
  partitions: number[];
  /** True when it is waiting for work (it holds the "asleep" lock that a commit wakes it by). */
  idle: boolean;
  /** The PostgreSQL backend pids of the sessions that show it. */
  pids: number[];
}

/** What the operator overview shows about the outbox, read in bounded work. */
export interface OutboxOverview {
  /** Rows waiting to be published (those in backoff and scheduled ones included). */
  backlog: {
    /** Exact up to {@link BACKLOG_EXACT_UP_TO}; above, the larger of that and PostgreSQL's estimate. */
    rows: number;
    /** False when `rows` is an estimate. */
    exact: boolean;
    /** Age in seconds of the oldest row waiting (0 when none). */
    oldestAgeSeconds: number;
  };
  /** Rows waiting for their next attempt after a failed publish, counted up to {@link BACKLOG_EXACT_UP_TO} + 1. */
  retrying: { rows: number; exact: boolean };
  /**
   * Scheduled messages waiting for their time (`scheduledCount`), or null when the schema has no
   * `outbox_scheduled` table yet (a migration is pending).
   */
  scheduled: ScheduledCount | null;
  /**
   * The relays connected to this schema's database that PostgreSQL can see: every relay in
   * ordering mode (by its lease), and relays without ordering while they wait for work (a relay
   * busy publishing holds no lock and is not listed).
   */
  relays: RelayInstance[];
  /** Partitions leased by some relay, and whether any relay in ordering mode is running. */
  partitionsLeased: number;
}

/** Options of {@link readOutboxOverview}. */
export interface OutboxOverviewOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
}

interface LockRow {
  pid: number;
  name: string | null;
  kind: 'member' | 'partition' | 'asleep';
  key: string;
}

/**
 * The lock holders of a schema: relays' membership and partition leases (two-key advisory locks,
 * classes derived from the schema) and the "asleep" lock (class {@link RELAY_ASLEEP_LOCK_CLASS},
 * key `hashtext(schema)`). `pg_locks` and `pg_stat_activity` are readable by every role; the
 * latter hides nothing this needs but another role's `application_name` on some versions.
 */
function relayLocksSql(): string {
  return `SELECT l.pid, a.application_name AS name,
      CASE WHEN l.classid OPERATOR(pg_catalog.=) $1::int8::pg_catalog.oid THEN 'member'
           WHEN l.classid OPERATOR(pg_catalog.=) $2::int8::pg_catalog.oid THEN 'partition'
           ELSE 'asleep' END AS kind,
      l.objid::pg_catalog.text AS key
    FROM pg_catalog.pg_locks l
    LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
    WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted AND l.objsubid OPERATOR(pg_catalog.=) 2
      AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
      AND (l.classid OPERATOR(pg_catalog.=) ANY (ARRAY[$1::int8, $2::int8]::pg_catalog.oid[])
        OR (l.classid OPERATOR(pg_catalog.=) $3::int8::pg_catalog.oid
          AND l.objid OPERATOR(pg_catalog.=) pg_catalog.hashtext($4::pg_catalog.text)::pg_catalog.oid))
    LIMIT 20000`;
}

/** Rows in backoff, through the partial index `outbox_available_at_idx` (attempts > 0), capped. */
export function retryingSql(schema: string): string {
  return `SELECT pg_catalog.count(*)::int AS n FROM (SELECT 1 FROM ${quoteIdentifier(schema)}.outbox o
      WHERE o.attempts OPERATOR(pg_catalog.>) 0 AND o.available_at OPERATOR(pg_catalog.>) pg_catalog.now() LIMIT ${BACKLOG_EXACT_UP_TO + 1}) AS capped`;
}

/** Groups lock rows into relay instances, by name (a relay's LISTEN and lease sessions share it). */
export function relayInstances(rows: readonly LockRow[]): RelayInstance[] {
  const byName = new Map<string, RelayInstance>();
  for (const row of rows) {
    const name = row.name !== null && row.name !== '' ? row.name : `pid ${row.pid}`;
    let relay = byName.get(name);
    if (relay === undefined) {
      relay = { name, ordering: false, partitions: [], idle: false, pids: [] };
      byName.set(name, relay);
    }
    if (!relay.pids.includes(Number(row.pid))) relay.pids.push(Number(row.pid));
    if (row.kind === 'member') relay.ordering = true;
    else if (row.kind === 'partition') relay.partitions.push(Number(row.key));
    else relay.idle = true;
  }
  // A session that leases partitions is a relay in ordering mode even between its two locks.
  for (const relay of byName.values()) {
    if (relay.partitions.length > 0) relay.ordering = true;
    relay.partitions.sort((a, b) => a - b);
    relay.pids.sort((a, b) => a - b);
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The outbox as an operator overview shows it: the backlog and the age of its oldest row, rows
 * waiting for a retry, scheduled messages, and the relays with their partition leases. Bounded work however large the
 * outbox: the backlog is counted up to 10,000 rows (then PostgreSQL's estimate), the oldest row
 * is read through the primary key, retries through their partial index, relays from `pg_locks`.
 * Needs SELECT on `outbox` (any mailroom role that reads the outbox has it).
 */
export async function readOutboxOverview(db: Queryable, options: OutboxOverviewOptions = {}): Promise<OutboxOverview> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  validateIdentifier(schema);
  const exec = toExecutor(db);
  const [backlog, retrying, locks, scheduledTable] = await Promise.all([
    exec.query<{ counted: number; estimate: number | null; oldest_age: number | null }>(backlogSql(schema), [`${quoteIdentifier(schema)}.outbox`]),
    exec.query<{ n: number }>(retryingSql(schema)),
    exec.query<LockRow>(relayLocksSql(), [memberLockClass(schema), partitionLockClass(schema), RELAY_ASLEEP_LOCK_CLASS, schema]),
    exec.query<{ present: boolean }>('SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present', [`${quoteIdentifier(schema)}.outbox_scheduled`]),
  ]);
  // Asked only when the table exists: an error inside a caller's transaction would abort it.
  const scheduled = scheduledTable.rows[0]?.present === true ? await scheduledCount(db, { schema }) : null;
  const b = backlog.rows[0];
  const counted = Number(b?.counted ?? 0);
  const exact = counted <= BACKLOG_EXACT_UP_TO;
  const rows = exact ? counted : Math.max(counted, Math.round(Number(b?.estimate ?? 0)));
  const retryRows = Number(retrying.rows[0]?.n ?? 0);
  const relays = relayInstances(locks.rows);
  return {
    backlog: { rows, exact, oldestAgeSeconds: Math.max(0, Number(b?.oldest_age ?? 0)) },
    retrying: { rows: Math.min(retryRows, BACKLOG_EXACT_UP_TO + 1), exact: retryRows <= BACKLOG_EXACT_UP_TO },
    scheduled,
    relays,
    partitionsLeased: new Set(relays.flatMap((r) => r.partitions)).size,
  };
}
