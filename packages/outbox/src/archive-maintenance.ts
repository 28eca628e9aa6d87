import { DEFAULT_SCHEMA, MailroomError, type Queryable } from '@mailroom/core';
import { quoteIdentifier, toExecutor, validateIdentifier } from '@mailroom/core/internal';

/** Options of {@link maintainArchive}. */
export interface MaintainArchiveOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** Days of history kept: a day partition that ended longer ago is dropped. Default: 7. */
  retentionDays?: number;
  /** Day partitions made ahead of today (UTC), so no published row lands in the default partition. Default: 2. */
  daysAhead?: number;
  /** The time to act at (tests). Default: now. */
  now?: Date;
}

/** What {@link maintainArchive} did. */
export interface ArchiveMaintenance {
  /** Partitions created (table names). */
  created: string[];
  /** Partitions dropped, whole, past retention. */
  dropped: string[];
  /** Rows past retention deleted from the default partition (rows of a day that had no partition of its own). */
  deletedFromDefault: number;
}

const DAY_MS = 86_400_000;
const PARTITION = /^outbox_archive_([0-9]{4})([0-9]{2})([0-9]{2})$/;

function dayName(ms: number): string {
  return `outbox_archive_${new Date(ms).toISOString().slice(0, 10).replaceAll('-', '')}`;
}

function dayLiteral(ms: number): string {
  return `'${new Date(ms).toISOString().slice(0, 10)} 00:00:00+00'`;
}

/**
 * Keeps the archive's day partitions: creates today's and the next `daysAhead` days' (UTC) and
 * drops every day partition that ended more than `retentionDays` ago with one `DROP TABLE` each
 * (no DELETE, no bloat: the cost does not grow with the rows). Run it daily as the owner of
 * mailroom's tables (`mailroom history prune`; creating and dropping partitions needs ownership,
 * which the relay's least-privilege role does not have). Rows of a day without a partition went to
 * the default partition; those past retention are deleted from it (few, when this runs daily).
 * A day whose rows are already in the default partition gets no partition of its own
 * (PostgreSQL would refuse it), so it is skipped, never failed.
 */
export async function maintainArchive(db: Queryable, options: MaintainArchiveOptions = {}): Promise<ArchiveMaintenance> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  validateIdentifier(schema);
  const retentionDays = options.retentionDays ?? 7;
  const daysAhead = options.daysAhead ?? 2;
  if (!Number.isInteger(retentionDays) || retentionDays < 1 || retentionDays > 36_500) throw new MailroomError('INVALID_CONFIG', '"retentionDays" must be an integer from 1 to 36500.');
  if (!Number.isInteger(daysAhead) || daysAhead < 0 || daysAhead > 366) throw new MailroomError('INVALID_CONFIG', '"daysAhead" must be an integer from 0 to 366.');
  const now = (options.now ?? new Date()).getTime();
  if (Number.isNaN(now)) throw new MailroomError('INVALID_CONFIG', '"now" must be a valid Date.');
  const q = toExecutor(db);
  const parent = `${quoteIdentifier(schema)}.outbox_archive`;
  const today = Math.floor(now / DAY_MS) * DAY_MS;
  const existing = await q.query<{ name: string }>(
    `SELECT c.relname::pg_catalog.text AS name FROM pg_catalog.pg_inherits i
       JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid
       JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) i.inhparent
       JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.relnamespace
      WHERE n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.name AND p.relname OPERATOR(pg_catalog.=) 'outbox_archive'`,
    [schema],
  );
  const names = new Set(existing.rows.map((r) => r.name));
  const result: ArchiveMaintenance = { created: [], dropped: [], deletedFromDefault: 0 };
  for (let day = today; day <= today + daysAhead * DAY_MS; day += DAY_MS) {
    const name = dayName(day);
    if (names.has(name)) continue;
    try {
      await q.query(`CREATE TABLE ${quoteIdentifier(schema)}.${quoteIdentifier(name)} PARTITION OF ${parent} FOR VALUES FROM (${dayLiteral(day)}) TO (${dayLiteral(day + DAY_MS)})`);
      result.created.push(name);
    } catch (error) {
      // 23514: the default partition already holds rows of that day; they stay there.
      if ((error as { code?: string }).code !== '23514') throw error;
    }
  }
  const cutoff = today - retentionDays * DAY_MS;
  for (const name of names) {
    const m = PARTITION.exec(name);
    if (m === null) continue;
    const start = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
    if (start + DAY_MS > cutoff) continue;
    await q.query(`DROP TABLE ${quoteIdentifier(schema)}.${quoteIdentifier(name)}`);
    result.dropped.push(name);
  }
  if (names.has('outbox_archive_default')) {
    const deleted = await q.query(
      `DELETE FROM ${quoteIdentifier(schema)}.outbox_archive_default WHERE published_at OPERATOR(pg_catalog.<) ${dayLiteral(cutoff)}::timestamptz`,
    );
    result.deletedFromDefault = deleted.rowCount ?? 0;
  }
  result.dropped.sort();
  return result;
}
