import { MailroomError, isUuid } from '@mailroom/core';

/** Which dead letters a replay or discard acts on: row ids / message ids, or a whole group. */
export interface DeadLetterSelection {
  /** Row ids (digits) or message ids (UUIDs). */
  ids?: readonly string[];
  /** A failure group's fingerprint. */
  group?: string;
}

const ROW_ID = /^\d{1,18}$/;

/**
 * The WHERE condition of a selection, its values appended to `params`. An empty selection is
 * refused rather than read as "everything": a discard must never delete the whole store by
 * accident. An id that is neither a row id nor a UUID is refused by name.
 */
export function selectionWhere(selection: DeadLetterSelection, params: unknown[]): string {
  const ids = selection.ids ?? [];
  const hasGroup = selection.group !== undefined && selection.group !== '';
  if (ids.length === 0 && !hasGroup) {
    throw new MailroomError('INVALID_CONFIG', 'Say which dead letters: give ids (row ids or message ids) or a group fingerprint.');
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
    params.push(selection.group);
    parts.push(`fingerprint = $${params.length}`);
  }
  return parts.join(' OR ');
}
