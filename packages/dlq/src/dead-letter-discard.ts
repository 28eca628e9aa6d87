import { toExecutor } from '@mailroom/core/internal';
import { selectionWhere, type DeadLetterSelection } from './dead-letter-selection.js';
import type { StoreContext } from './store-context.js';

/** Deletes the selected dead letters; returns how many. */
export async function discardDeadLetters(ctx: StoreContext, selection: DeadLetterSelection): Promise<number> {
  const params: unknown[] = [];
  const where = selectionWhere(selection, params);
  const result = await toExecutor(ctx.db).query(`DELETE FROM ${ctx.table} WHERE ${where}`, params);
  return result.rowCount;
}
