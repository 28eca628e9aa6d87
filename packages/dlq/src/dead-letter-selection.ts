import { MailroomError, isUuid } from '@mailroom/core';
import { cutText, storableText } from './storable-text.js';

/**
 * Dead letters by what they are: every field narrows the set (AND). The workbench and `list`
 * filter with it; a replay or discard of a whole filtered set selects with it.
 */
export interface DeadLetterFilter {
  /** Only this source (a queue name, or `relay`). Default: all. */
  source?: string;
  /** Only this message type. Default: all. */
  type?: string;
  /** Only this reason (a `DEAD_LETTER_REASON`). Default: all. */
  reason?: string;
  /** Only this failure group (fingerprint). Default: all. */
  group?: string;
  /** Only dead letters whose last failure is at or after this time. Default: any time. */
  since?: Date;
  /** Only dead letters whose last failure is before this time. Default: any time. */
  until?: Date;
  /**
   * Only dead letters whose error or JSON payload contains this text, case-insensitively (`%`
   * and `_` are plain characters here). A scan: on a large store, narrow by time or group too.
   * Default: no text condition.
   */
  text?: string;
  /** Leave out rows already replayed. Default: false (they are listed). */
  pendingOnly?: boolean;
}

/** Which dead letters a replay or discard acts on: row ids / message ids, a whole group, or a filter. */
export interface DeadLetterSelection {
  /** Row ids (digits) or message ids (UUIDs). */
  ids?: readonly string[];
  /** A failure group's fingerprint. */
  group?: string;
  /**
   * Every dead letter matching this filter (a whole filtered set: "everything from one outage").
   * Not together with `ids` or `group`; a filter without any condition is refused.
   */
  filter?: DeadLetterFilter;
}

const ROW_ID = /^\d{1,18}$/;

/** The longest text a filter compares with: longer ones are cut (nothing longer is a useful search). */
const MAX_FILTER_TEXT = 1000;

/**
 * A filter value as PostgreSQL can take it: a NUL (refused in `text`) or an unpaired surrogate
 * becomes U+FFFD, which no stored value holds where the sender had a NUL either (the sink stores
 * it the same way), and the text is cut at 1,000 characters.
 */
function filterText(value: string): string {
  return storableText(cutText(value, MAX_FILTER_TEXT));
}

/** `text` as a LIKE pattern that matches it literally anywhere (backslash is the escape). */
function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function assertDate(value: Date | undefined, name: string): void {
  if (value !== undefined && (!(value instanceof Date) || Number.isNaN(value.getTime()))) {
    throw new MailroomError('INVALID_CONFIG', `The dead-letter filter's ${name} is not a valid date.`);
  }
}

/**
 * The conditions of a filter (to be joined with AND), their values appended to `params`. Empty
 * when the filter has none. Values are always bound: no filter text reaches the SQL text.
 */
export function filterConditions(filter: DeadLetterFilter, params: unknown[]): string[] {
  const where: string[] = [];
  const add = (condition: (placeholder: string) => string, value: unknown): void => {
    params.push(value);
    where.push(condition(`$${params.length}`));
  };
  assertDate(filter.since, 'since');
  assertDate(filter.until, 'until');
  if (filter.source !== undefined && filter.source !== '') add((p) => `source = ${p}`, filterText(filter.source));
  if (filter.type !== undefined && filter.type !== '') add((p) => `type = ${p}`, filterText(filter.type));
  if (filter.reason !== undefined && filter.reason !== '') add((p) => `reason = ${p}`, filterText(filter.reason));
  if (filter.group !== undefined && filter.group !== '') add((p) => `fingerprint = ${p}`, filterText(filter.group));
  if (filter.since !== undefined) add((p) => `last_failed_at >= ${p}`, filter.since);
  if (filter.until !== undefined) add((p) => `last_failed_at < ${p}`, filter.until);
  if (filter.text !== undefined && filter.text !== '') {
    add((p) => `(error ILIKE ${p} ESCAPE '\\' OR payload::text ILIKE ${p} ESCAPE '\\')`, containsPattern(filterText(filter.text)));
  }
  if (filter.pendingOnly === true) where.push('replayed_at IS NULL');
  return where;
}

/**
 * The WHERE condition of a selection, its values appended to `params`. An empty selection is
 * refused rather than read as "everything": a discard must never delete the whole store by
 * accident. An id that is neither a row id nor a UUID is refused by name.
 */
export function selectionWhere(selection: DeadLetterSelection, params: unknown[]): string {
  const ids = selection.ids ?? [];
  const hasGroup = selection.group !== undefined && selection.group !== '';
  if (selection.filter !== undefined) {
    if (ids.length > 0 || hasGroup) throw new MailroomError('INVALID_CONFIG', 'Select dead letters by ids or a group, or by a filter: not both.');
    const conditions = filterConditions(selection.filter, params);
    if (conditions.length === 0) {
      throw new MailroomError('INVALID_CONFIG', 'A filter that selects dead letters needs at least one condition (time, source, type, reason, group, text or pending).');
    }
    return conditions.join(' AND ');
  }
  if (ids.length === 0 && !hasGroup) {
    throw new MailroomError('INVALID_CONFIG', 'Say which dead letters: give ids (row ids or message ids), a group fingerprint or a filter.');
  }
  const rowIds: string[] = [];
  const messageIds: string[] = [];
  for (const id of ids) {
    if (ROW_ID.test(id)) rowIds.push(id);
    else if (isUuid(id)) messageIds.push(id);
    else throw new MailroomError('INVALID_CONFIG', `${JSON.stringify(id)} is neither a dead-letter row id (digits) nor a message id (UUID).`);
  }
  const parts: string[] = [];
  if (rowIds.length > 0) {
    params.push(rowIds);
    parts.push(`id = ANY($${params.length}::bigint[])`);
  }
  if (messageIds.length > 0) {
    params.push(messageIds);
    parts.push(`message_id = ANY($${params.length}::uuid[])`);
  }
  if (hasGroup) {
    params.push(filterText(selection.group as string));
    parts.push(`fingerprint = $${params.length}`);
  }
  return `(${parts.join(' OR ')})`;
}
