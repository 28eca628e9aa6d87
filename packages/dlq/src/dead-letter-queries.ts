import { MailroomError } from '@mailroom/core';
import { toExecutor } from '@mailroom/core/internal';
import type { DeadLetter, DeadLetterGroup } from './dead-letter.js';
import { DEAD_LETTER_COLUMNS, toDeadLetter, type DeadLetterRow } from './dead-letter-row.js';
import { filterConditions, selectionWhere, type DeadLetterFilter, type DeadLetterSelection } from './dead-letter-selection.js';
import type { StoreContext } from './store-context.js';

/** Filters of `DeadLetterStore.list` and `page`: a {@link DeadLetterFilter}, a page size and where to go on. */
export interface ListDeadLettersOptions extends DeadLetterFilter {
  /** At most this many rows, newest failure first. Default: 100 (at most 100,000). */
  limit?: number;
  /** Go on after this cursor (the `next` of an earlier page with the same filter). Default: from the newest. */
  after?: string;
}

/** One page of dead letters and the cursor of the next one. */
export interface DeadLetterPage {
  /** The dead letters of the page, newest failure first. */
  deadLetters: DeadLetter[];
  /** Pass as `after` to get the next page; null when this page is the last one. */
  next: string | null;
}

/** A cursor: the last row's failure time in microseconds since the epoch, and its id. */
const CURSOR = /^(\d{1,17})_(\d{1,18})$/;

/** The keyset condition of a cursor: rows strictly after it in (last_failed_at DESC, id DESC) order. */
function afterCursor(cursor: string, params: unknown[]): string {
  const match = CURSOR.exec(cursor);
  if (match === null) throw new MailroomError('INVALID_CONFIG', `${JSON.stringify(cursor.slice(0, 100))} is not a dead-letter page cursor (use the \`next\` of a page).`);
  params.push(match[1], match[2]);
  return `(last_failed_at, id) < ('epoch'::timestamptz + $${params.length - 1}::bigint * interval '1 microsecond', $${params.length}::bigint)`;
}

/**
 * One page of dead letters matching `filter`, newest failure first, by keyset on
 * (last_failed_at, id): each page is an index range read (migration 10), however deep.
 */
export async function pageDeadLetters(ctx: StoreContext, filter: ListDeadLettersOptions = {}): Promise<DeadLetterPage> {
  const params: unknown[] = [];
  const where = filterConditions(filter, params);
  if (filter.after !== undefined && filter.after !== '') where.push(afterCursor(filter.after, params));
  const limit = filter.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) throw new MailroomError('INVALID_CONFIG', `A page holds 1 to 100,000 dead letters (got ${limit}).`);
  // One more than asked: whether there is a next page, without a count.
  params.push(limit + 1);
  const result = await toExecutor(ctx.db).query<DeadLetterRow & { cursor_at: string }>(
    `SELECT ${DEAD_LETTER_COLUMNS}, (extract(epoch FROM last_failed_at) * 1000000)::bigint::text AS cursor_at
     FROM ${ctx.table} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY last_failed_at DESC, ${ctx.table}.id DESC LIMIT $${params.length}`,
    params,
  );
  const rows = result.rows.slice(0, limit);
  const last = rows[rows.length - 1];
  const next = result.rows.length > limit && last !== undefined ? `${last.cursor_at}_${last.id}` : null;
  return { deadLetters: rows.map(toDeadLetter), next };
}

/** Dead letters matching `filter`, newest failure first (the first page of {@link pageDeadLetters}). */
export async function listDeadLetters(ctx: StoreContext, filter: ListDeadLettersOptions = {}): Promise<DeadLetter[]> {
  return (await pageDeadLetters(ctx, filter)).deadLetters;
}

/**
 * Every dead letter matching `filter`, newest failure first, read page by page (`batchSize`
 * rows at a time, default 500) so an export of a million rows holds one page in memory.
 */
export async function* iterateDeadLetters(ctx: StoreContext, filter: DeadLetterFilter = {}, batchSize = 500): AsyncGenerator<DeadLetter, void, undefined> {
  let after: string | undefined;
  for (;;) {
    const page = await pageDeadLetters(ctx, { ...filter, limit: batchSize, ...(after === undefined ? {} : { after }) });
    yield* page.deadLetters;
    if (page.next === null) return;
    after = page.next;
  }
}

/** How many dead letters match `filter` (a count: a scan of what matches). */
export async function countDeadLetters(ctx: StoreContext, filter: DeadLetterFilter = {}): Promise<number> {
  const params: unknown[] = [];
  const where = filterConditions(filter, params);
  const result = await toExecutor(ctx.db).query<{ n: string }>(
    `SELECT count(*)::text AS n FROM ${ctx.table} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}`,
    params,
  );
  return Number(result.rows[0]?.n ?? 0);
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
  const rows = await db.query<DeadLetterRow>(`SELECT ${DEAD_LETTER_COLUMNS} FROM ${ctx.table} WHERE ${where} ORDER BY ${ctx.table}.id LIMIT $${params.length}`, params);
  return { count: Number(counted.rows[0]?.n ?? 0), deadLetters: rows.rows.map(toDeadLetter) };
}
