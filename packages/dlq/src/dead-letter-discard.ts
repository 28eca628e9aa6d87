import { inTransaction, toExecutor } from '@mailroom/core/internal';
import { enqueue } from '@mailroom/outbox';
import { recordAction } from './dead-letter-audit.js';
import { outgoing } from './dead-letter-replay.js';
import { forgetParked, releaseParked } from './parked-release.js';
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
 * transaction; returns how many. A discarded head of a parked key releases the messages parked
 * behind it, in the order they arrived, through the outbox (in the same transaction; recorded in
 * the audit as a replay). With `dryRun`, only counts them.
 */
export async function discardDeadLetters(ctx: StoreContext, options: DiscardOptions): Promise<number> {
  const params: unknown[] = [];
  const where = selectionWhere(options, params);
  if (options.dryRun === true) {
    const counted = await toExecutor(ctx.db).query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ctx.table} WHERE ${where}`, params);
    return Number(counted.rows[0]?.n ?? 0);
  }
  return inTransaction(ctx.db, async (tx) => {
    const deleted = await tx.query<{ id: string; message_id: string; source: string }>(
      `DELETE FROM ${ctx.table} WHERE ${where} RETURNING id::text AS id, message_id::text AS message_id, source`,
      params,
    );
    const rows = deleted.rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
    const messageIds = rows.map((r) => r.message_id);
    const gone = rows.map((r) => ({ source: r.source, messageId: r.message_id }));
    // A discarded parked message waits no more; a discarded head releases what waits behind it,
    // in order, through the outbox (the head itself never goes).
    await forgetParked(tx, ctx, gone);
    const releases = await releaseParked(tx, ctx, gone, 'discard');
    const released = releases.flatMap((r) => r.released);
    if (released.length > 0) await enqueue(tx, released.map((dl) => outgoing(dl, dl.payload)), { schema: ctx.schema });
    const actor = options.actor ?? ctx.actor;
    if (messageIds.length > 0) await recordAction(tx, ctx, { actor, action: 'discard', selection: options, messageIds });
    // The release is a replay of its own in the audit: who sent which messages back, and when.
    if (released.length > 0) await recordAction(tx, ctx, { actor, action: 'replay', selection: { ids: released.map((dl) => dl.messageId) }, messageIds: released.map((dl) => dl.messageId) });
    return messageIds.length;
  });
}
