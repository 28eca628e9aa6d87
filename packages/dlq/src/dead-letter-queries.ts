import { toExecutor } from '@mailroom/core/internal';
import type { DeadLetter, DeadLetterGroup } from './dead-letter.js';
import { DEAD_LETTER_COLUMNS, toDeadLetter, type DeadLetterRow } from './dead-letter-row.js';
import { selectionWhere, type DeadLetterSelection } from './dead-letter-selection.js';
import type { StoreContext } from './store-context.js';

/** Filters of `DeadLetterStore.list`. */
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

/** Dead letters matching `filter`, newest failure first. */
export async function listDeadLetters(ctx: StoreContext, filter: ListDeadLettersOptions = {}): Promise<DeadLetter[]> {
  const params: unknown[] = [];
  const where: string[] = [];
  const add = (condition: (placeholder: string) => string, value: unknown): void => {
    params.push(value);
    where.push(condition(`$${params.length}`));
  };
  if (filter.source !== undefined) add((p) => `source = ${p}`, filter.source);
  if (filter.type !== undefined) add((p) => `type = ${p}`, filter.type);
  if (filter.group !== undefined) add((p) => `fingerprint = ${p}`, filter.group);
  if (filter.since !== undefined) add((p) => `last_failed_at >= ${p}`, filter.since);
  if (filter.pendingOnly === true) where.push('replayed_at IS NULL');
  params.push(filter.limit ?? 100);
  const result = await toExecutor(ctx.db).query<DeadLetterRow>(
    `SELECT ${DEAD_LETTER_COLUMNS} FROM ${ctx.table} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY last_failed_at DESC, id DESC LIMIT $${params.length}`,
    params,
  );
  return result.rows.map(toDeadLetter);
}

/** One dead letter by row id or message id: the newest row when several sources have the message. */
export async function showDeadLetter(ctx: StoreContext, id: string): Promise<DeadLetter | undefined> {
  const params: unknown[] = [];
  const where = selectionWhere({ ids: [id] }, params);
  const result = await toExecutor(ctx.db).query<DeadLetterRow>(
    `SELECT ${DEAD_LETTER_COLUMNS} FROM ${ctx.table} WHERE ${where} ORDER BY last_failed_at DESC LIMIT 1`,
    params,
  );
  const row = result.rows[0];
  return row === undefined ? undefined : toDeadLetter(row);
}

interface GroupRow {
  fingerprint: string;
  source: string;
  reason: string;
  type: string | null;
  count: string;
  pending: string;
  first_failed_at: Date;
  last_failed_at: Date;
  sample_error: string | null;
}

/** Failure groups with their counts, largest first. */
export async function deadLetterGroups(ctx: StoreContext): Promise<DeadLetterGroup[]> {
  const result = await toExecutor(ctx.db).query<GroupRow>(
    `SELECT fingerprint, min(source) AS source, min(reason) AS reason, mode() WITHIN GROUP (ORDER BY type) AS type,
       count(*)::text AS count, count(*) FILTER (WHERE replayed_at IS NULL)::text AS pending,
       min(first_failed_at) AS first_failed_at, max(last_failed_at) AS last_failed_at, min(error) AS sample_error
     FROM ${ctx.table} GROUP BY fingerprint ORDER BY count(*) DESC, max(last_failed_at) DESC`,
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
}

/** What a selection matches: how many dead letters, and the first of them. */
export interface SelectionPreview {
  /** How many dead letters the selection matches. */
  count: number;
  /** The first `limit` of them, by row id. */
  deadLetters: DeadLetter[];
}

/** The dead letters a replay or discard of `selection` would act on (see `DeadLetterStore.preview`). */
export async function previewSelection(ctx: StoreContext, selection: DeadLetterSelection, options: { limit?: number } = {}): Promise<SelectionPreview> {
  const params: unknown[] = [];
  const where = selectionWhere(selection, params);
  const db = toExecutor(ctx.db);
  const counted = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ctx.table} WHERE ${where}`, params);
  params.push(options.limit ?? 20);
  const rows = await db.query<DeadLetterRow>(`SELECT ${DEAD_LETTER_COLUMNS} FROM ${ctx.table} WHERE ${where} ORDER BY id LIMIT $${params.length}`, params);
  return { count: Number(counted.rows[0]?.n ?? 0), deadLetters: rows.rows.map(toDeadLetter) };
}
