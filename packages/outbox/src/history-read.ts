import { DEFAULT_SCHEMA, MailroomError, type Queryable } from '@mailroom/core';
import { quoteIdentifier, toExecutor, validateIdentifier } from '@mailroom/core/internal';

/** One published event as the archive keeps it (see the relay's `archive` option). */
export interface ArchivedEvent {
  /** Its outbox id: the order the relay published in (a key's order). A decimal string (bigint). */
  outboxId: string;
  messageId: string;
  type: string;
  exchange: string;
  routingKey: string;
  key: string | null;
  /** The stored headers (the version header `x-mailroom-version` and trace context included). */
  headers: Record<string, unknown>;
  payload: unknown;
  occurredAt: Date;
  publishedAt: Date;
}

/** Which archived events to read. Times are publish times (the archive's partition key). */
export interface HistoryFilter {
  /** Published at or after. */
  since?: Date;
  /** Published before. */
  until?: Date;
  /**
   * Only this message type, or only these types (one replay of several types keeps their outbox
   * order across types, which one replay per type cannot). An empty list is refused.
   */
  type?: string | readonly string[];
  /** Only this ordering key. */
  key?: string;
}

/** Options of {@link listHistory}. */
export interface ListHistoryOptions extends HistoryFilter {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** At most this many events (1 to 10000). Default: 100. */
  limit?: number;
}

/** An archived row as read, its headers and payload still JSON text (what a replay publishes as is). */
export interface ArchivedRow {
  outbox_id: string;
  message_id: string;
  type: string;
  exchange: string;
  routing_key: string;
  key: string | null;
  headers: string;
  payload: string;
  occurred_ms: number;
  published_ms: number;
}

const COLUMNS = `a.outbox_id::pg_catalog.text AS outbox_id, a.message_id::pg_catalog.text AS message_id, a.type, a.exchange, a.routing_key, a.key,
  a.headers::pg_catalog.text AS headers, a.payload::pg_catalog.text AS payload,
  (extract(epoch FROM a.occurred_at) OPERATOR(pg_catalog.*) 1000)::double precision AS occurred_ms,
  (extract(epoch FROM a.published_at) OPERATOR(pg_catalog.*) 1000)::double precision AS published_ms`;

// $1 since, $2 until, $3 type, $4 key, $5 after outbox id (ascending) / before (descending), $6 limit.
// A NULL filter matches all; published_at bounds let PostgreSQL skip whole day partitions.
const FILTER = `($1::timestamptz IS NULL OR a.published_at OPERATOR(pg_catalog.>=) $1::timestamptz)
  AND ($2::timestamptz IS NULL OR a.published_at OPERATOR(pg_catalog.<) $2::timestamptz)
  AND ($3::pg_catalog.text[] IS NULL OR a.type OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[]))
  AND ($4::pg_catalog.text IS NULL OR a.key OPERATOR(pg_catalog.=) $4::pg_catalog.text)`;

function archiveTable(schema: string): string {
  validateIdentifier(schema);
  return `${quoteIdentifier(schema)}.outbox_archive`;
}

function checkFilter(filter: HistoryFilter): void {
  for (const name of ['since', 'until'] as const) {
    const value = filter[name];
    if (value !== undefined && (!(value instanceof Date) || Number.isNaN(value.getTime()))) {
      throw new MailroomError('INVALID_CONFIG', `"${name}" must be a valid Date.`);
    }
  }
  // PostgreSQL text cannot hold NUL: refused here with a clear message, not as a driver error.
  const key = filter.key;
  if (key !== undefined && (typeof key !== 'string' || key.includes('\u0000'))) {
    throw new MailroomError('INVALID_CONFIG', '"key" must be a string without NUL characters.');
  }
  const types = filter.type;
  if (types === undefined) return;
  const list: readonly unknown[] = Array.isArray(types) ? types : [types];
  if (list.length === 0 || list.length > 1000 || list.some((t) => typeof t !== 'string' || t.includes('\u0000'))) {
    throw new MailroomError('INVALID_CONFIG', '"type" must be a string or a list of 1 to 1000 strings, without NUL characters.');
  }
}

/** The type filter as the text[] parameter of FILTER (NULL: every type). */
function typeList(type: HistoryFilter['type']): readonly string[] | null {
  if (type === undefined) return null;
  return typeof type === 'string' ? [type] : type;
}

/**
 * One page of archived rows in outbox order after `afterOutboxId` (ascending), or before it
 * (descending): the keyset read that list and replay share.
 */
export async function readArchivePage(
  db: Queryable,
  schema: string,
  filter: HistoryFilter,
  cursor: string | null,
  limit: number,
  direction: 'asc' | 'desc',
): Promise<ArchivedRow[]> {
  checkFilter(filter);
  const cmp = direction === 'asc' ? '>' : '<';
  const result = await toExecutor(db).query<ArchivedRow>(
    `SELECT ${COLUMNS} FROM ${archiveTable(schema)} a
      WHERE ${FILTER} AND ($5::bigint IS NULL OR a.outbox_id OPERATOR(pg_catalog.${cmp}) $5::bigint)
      ORDER BY a.outbox_id ${direction === 'asc' ? 'ASC' : 'DESC'} LIMIT $6`,
    [filter.since ?? null, filter.until ?? null, typeList(filter.type), filter.key ?? null, cursor, limit],
  );
  return result.rows;
}

/** An archived row as an {@link ArchivedEvent}. */
export function archivedEvent(row: ArchivedRow): ArchivedEvent {
  return {
    outboxId: row.outbox_id,
    messageId: row.message_id,
    type: row.type,
    exchange: row.exchange,
    routingKey: row.routing_key,
    key: row.key,
    headers: JSON.parse(row.headers) as Record<string, unknown>,
    payload: JSON.parse(row.payload) as unknown,
    occurredAt: new Date(row.occurred_ms),
    publishedAt: new Date(row.published_ms),
  };
}

/**
 * The newest archived events that match (newest first), to find an event by key, type or time.
 *
 * ```ts
 * const events = await listHistory(pool, { key: 'order-42', limit: 20 });
 * ```
 */
export async function listHistory(db: Queryable, options: ListHistoryOptions = {}): Promise<ArchivedEvent[]> {
  const limit = options.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new MailroomError('INVALID_CONFIG', '"limit" must be an integer from 1 to 10000.');
  const rows = await readArchivePage(db, options.schema ?? DEFAULT_SCHEMA, options, null, limit, 'desc');
  return rows.map(archivedEvent);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The archived event with this message id, or undefined when the archive does not hold it (never
 * published with the archive on, or dropped by retention). A string that is not a UUID is refused.
 */
export async function readHistory(db: Queryable, messageId: string, options: { schema?: string } = {}): Promise<ArchivedEvent | undefined> {
  if (typeof messageId !== 'string' || !UUID.test(messageId)) {
    throw new MailroomError('INVALID_CONFIG', `Not a message id (a UUID): ${JSON.stringify(String(messageId).slice(0, 80))}.`);
  }
  const result = await toExecutor(db).query<ArchivedRow>(
    `SELECT ${COLUMNS} FROM ${archiveTable(options.schema ?? DEFAULT_SCHEMA)} a WHERE a.message_id OPERATOR(pg_catalog.=) $1::uuid ORDER BY a.outbox_id LIMIT 1`,
    [messageId],
  );
  const row = result.rows[0];
  return row === undefined ? undefined : archivedEvent(row);
}

/**
 * When the oldest archived event (the first in outbox order) was published; null when the archive
 * is empty. The start of what a replay can give: anything older is past retention.
 */
export async function oldestArchived(db: Queryable, options: { schema?: string } = {}): Promise<Date | null> {
  const result = await toExecutor(db).query<{ oldest_ms: number | null }>(
    // The first row in outbox order stands for the oldest: ids grow in publish order (a retried
    // row aside), and this reads one index entry per partition instead of every row.
    `SELECT (extract(epoch FROM a.published_at) OPERATOR(pg_catalog.*) 1000)::double precision AS oldest_ms
       FROM ${archiveTable(options.schema ?? DEFAULT_SCHEMA)} a ORDER BY a.outbox_id LIMIT 1`,
  );
  const ms = result.rows[0]?.oldest_ms;
  return ms === null || ms === undefined ? null : new Date(ms);
}
