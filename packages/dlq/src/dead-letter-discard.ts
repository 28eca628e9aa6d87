import { inTransaction, toExecutor } from '@mailroom/core/internal';
import { recordAction } from './dead-letter-audit.js';
import { selectionWhere, type DeadLetterSelection } from './dead-letter-selection.js';
import type { StoreContext } from './store-context.js';

/** Options of `DeadLetterStore.discard`. */
export interface DiscardOptions extends DeadLetterSelection {
  /** Count what would be deleted, delete nothing (and record nothing). Default: false. */
  dryRun?: boolean;
  /** Who discards, for the audit. Default: the store's `actor`. */
  actor?: string;
}

/**
 * Deletes the selected dead letters and records the discard (who, what, how many) in the same
 * transaction; returns how many. With `dryRun`, only counts them.
 */
export async function discardDeadLetters(ctx: StoreContext, options: DiscardOptions): Promise<number> {
  const params: unknown[] = [];
  const where = selectionWhere(options, params);
  if (options.dryRun === true) {
    const counted = await toExecutor(ctx.db).query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ctx.table} WHERE ${where}`, params);
    return Number(counted.rows[0]?.n ?? 0);
  }
  return inTransaction(ctx.db, async (tx) => {
    const deleted = await tx.query<{ message_id: string }>(`DELETE FROM ${ctx.table} WHERE ${where} RETURNING message_id::text AS message_id`, params);
    const messageIds = deleted.rows.map((r) => r.message_id);
    if (messageIds.length > 0) await recordAction(tx, ctx, { actor: options.actor ?? ctx.actor, action: 'discard', selection: options, messageIds });
    return messageIds.length;
  });
}
