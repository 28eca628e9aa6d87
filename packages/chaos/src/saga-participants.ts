import { enqueue } from '@mailroom/outbox';
import { handler, type HandlerBinding, type HandlerContext } from '@mailroom/inbox';
import { crashPoint, quoteIdentifier } from '@mailroom/core/internal';
import type { SagaContracts } from './saga-contracts.js';

/**
 * A defect planted on purpose in the harness's own saga services, to prove that the checker
 * catches it (the harness's self-test; never in a real run):
 * - `leaky-compensation`: inventory's release gives the stock back through a connection of its
 *   own, outside the handler's transaction, so a retry of the release (an injected failure after
 *   it, a crash before COMMIT) gives it back twice.
 */
export type SagaDefect = 'none' | 'leaky-compensation';

/** What the saga services share: where to write, who they are, and the injected failures. */
export interface SagaServiceContext {
  schema: string;
  contracts: SagaContracts;
  /** The process name, written to the ledger. */
  process: string;
  /** Share of handler runs that throw a transient error, before or after the step's effect. */
  failureRate: number;
  defect: SagaDefect;
  /** Runs a statement outside any transaction (the leaky defect's own connection). */
  outside: (text: string, params: unknown[]) => Promise<unknown>;
  /** How late the slow card's processor answers, in ms. */
  processorDelayMs: number;
}

/** Injected transient failures: before the step's effect, or after it and before COMMIT. */
export function failurePoint(rate: number): 'before' | 'after' | undefined {
  if (rate <= 0 || Math.random() >= rate) return undefined;
  return Math.random() < 0.5 ? 'before' : 'after';
}

/**
 * Wraps a step: the injected failures around it, the harness's crash point in the middle, and
 * the ledger row (one per application, in the step's transaction).
 */
export async function applyStep<P extends { orderId: string }>(
  s: SagaServiceContext,
  ctx: Pick<HandlerContext<P>, 'db' | 'message' | 'payload'>,
  effect: () => Promise<string | undefined>,
): Promise<void> {
  const failure = failurePoint(s.failureRate);
  if (failure === 'before') throw new Error('chaos: transient handler failure');
  const action = await effect();
  crashPoint('chaos.handler.mid');
  if (action !== undefined) {
    await ctx.db.query(`INSERT INTO ${quoteIdentifier(s.schema)}.saga_ledger (order_id, action, message_id, process, pid) VALUES ($1, $2, $3, $4, $5)`, [
      ctx.payload.orderId,
      action,
      ctx.message.messageId,
      s.process,
      process.pid,
    ]);
  }
  if (failure === 'after') throw new Error('chaos: transient handler failure after the step');
}

/** Inventory's handlers: reserve, release (the compensation, a tombstone when it comes first), commit. */
export function inventoryHandlers(s: SagaServiceContext): HandlerBinding[] {
  const t = quoteIdentifier(s.schema);
  const c = s.contracts;
  const opts = { schema: s.schema };
  return [
    handler(c.ReserveInventory, (ctx) =>
      applyStep(s, ctx, async () => {
        const { payload, db, tx } = ctx;
        const known = await db.query(`SELECT status FROM ${t}.saga_reservations WHERE order_id = $1 FOR UPDATE`, [payload.orderId]);
        if (known.rows.length > 0) return 'reserve-refused';
        const taken = await db.query(`UPDATE ${t}.saga_stock SET available = available - $2 WHERE sku = $1 AND available >= $2 RETURNING sku`, [payload.sku, payload.qty]);
        const reserved = taken.rows.length > 0;
        await db.query(`INSERT INTO ${t}.saga_reservations (order_id, sku, qty, status) VALUES ($1, $2, $3, $4)`, [payload.orderId, payload.sku, reserved ? payload.qty : 0, reserved ? 'reserved' : 'rejected']);
        const key = { key: payload.orderId };
        await enqueue(tx, reserved ? c.InventoryReserved.create({ orderId: payload.orderId }, key) : c.InventoryRejected.create({ orderId: payload.orderId }, key), opts);
        return reserved ? 'reserve' : 'reject';
      }),
    ),
    handler(c.ReleaseInventory, (ctx) =>
      applyStep(s, ctx, async () => {
        const { payload, db } = ctx;
        if (s.defect === 'leaky-compensation') {
          // The planted defect: the stock goes back outside the transaction, so a retry gives it back again.
          const { rows } = await db.query<{ sku: string; qty: number; status: string }>(`SELECT sku, qty, status FROM ${t}.saga_reservations WHERE order_id = $1`, [payload.orderId]);
          const r = rows[0];
          if (r !== undefined && r.status === 'reserved') {
            await s.outside(`UPDATE ${t}.saga_stock SET available = available + $2 WHERE sku = $1`, [r.sku, r.qty]);
            await db.query(`UPDATE ${t}.saga_reservations SET status = 'released' WHERE order_id = $1`, [payload.orderId]);
            return 'release';
          }
        }
        // The tombstone first: its INSERT waits for a reservation another transaction is still
        // inserting (the reserve in flight when the reserve timeout's release came), and the UPDATE
        // after it, a new statement, sees that reservation committed. UPDATE first missed it: its
        // snapshot had no such row, and the INSERT then conflicted with it: stock kept for good.
        const tomb = await db.query(`INSERT INTO ${t}.saga_reservations (order_id, sku, qty, status) VALUES ($1, '', 0, 'released') ON CONFLICT (order_id) DO NOTHING RETURNING order_id`, [
          payload.orderId,
        ]);
        if (tomb.rows.length > 0) return 'release-tombstone';
        const { rows } = await db.query<{ sku: string; qty: number }>(
          `UPDATE ${t}.saga_reservations SET status = 'released' WHERE order_id = $1 AND status = 'reserved' RETURNING sku, qty`,
          [payload.orderId],
        );
        const r = rows[0];
        if (r === undefined) return 'release-nothing';
        await db.query(`UPDATE ${t}.saga_stock SET available = available + $2 WHERE sku = $1`, [r.sku, r.qty]);
        return 'release';
      }),
    ),
    handler(c.CommitInventory, (ctx) =>
      applyStep(s, ctx, async () => {
        const done = await ctx.db.query(`UPDATE ${t}.saga_reservations SET status = 'committed' WHERE order_id = $1 AND status = 'reserved' RETURNING order_id`, [ctx.payload.orderId]);
        return done.rows.length > 0 ? 'commit' : 'commit-nothing';
      }),
    ),
  ];
}

/** Payments' handlers: charge (at once, declined, or pending a slow processor), the processor's late answer, void (the compensation). */
export function paymentsHandlers(s: SagaServiceContext): HandlerBinding[] {
  const t = quoteIdentifier(s.schema);
  const c = s.contracts;
  const opts = { schema: s.schema };
  return [
    handler(c.ChargePayment, (ctx) =>
      applyStep(s, ctx, async () => {
        const { payload, db, tx } = ctx;
        const status = payload.card === 'declined' ? 'declined' : payload.card === 'slow' ? 'pending' : 'charged';
        const inserted = await db.query(`INSERT INTO ${t}.saga_payments (order_id, amount, status) VALUES ($1, $2, $3) ON CONFLICT (order_id) DO NOTHING RETURNING order_id`, [
          payload.orderId,
          payload.amount,
          status,
        ]);
        if (inserted.rows.length === 0) return 'charge-refused';
        const key = { key: payload.orderId };
        if (status === 'charged') await enqueue(tx, c.PaymentCharged.create({ orderId: payload.orderId }, key), opts);
        else if (status === 'declined') await enqueue(tx, c.PaymentDeclined.create({ orderId: payload.orderId }, key), opts);
        else await enqueue(tx, c.ProcessorAnswered.create({ orderId: payload.orderId }, key), { ...opts, delay: s.processorDelayMs });
        return status === 'charged' ? 'charge' : status === 'declined' ? 'decline' : 'charge-pending';
      }),
    ),
    handler(c.ProcessorAnswered, (ctx) =>
      applyStep(s, ctx, async () => {
        const { payload, db, tx } = ctx;
        const done = await db.query(`UPDATE ${t}.saga_payments SET status = 'charged' WHERE order_id = $1 AND status = 'pending' RETURNING order_id`, [payload.orderId]);
        if (done.rows.length === 0) return 'answer-after-void';
        await enqueue(tx, c.PaymentCharged.create({ orderId: payload.orderId }, { key: payload.orderId }), opts);
        return 'charge';
      }),
    ),
    handler(c.VoidPayment, (ctx) =>
      applyStep(s, ctx, async () => {
        const { rows } = await ctx.db.query<{ status: string }>(
          `INSERT INTO ${t}.saga_payments (order_id, status) VALUES ($1, 'voided')
           ON CONFLICT (order_id) DO UPDATE SET status = CASE saga_payments.status WHEN 'pending' THEN 'voided' WHEN 'charged' THEN 'refunded' ELSE saga_payments.status END
           RETURNING status`,
          [ctx.payload.orderId],
        );
        return `void:${rows[0]?.status ?? '?'}`;
      }),
    ),
  ];
}
