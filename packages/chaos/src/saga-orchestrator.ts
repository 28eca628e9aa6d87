import { z } from 'zod/v4';
import { crashPoint, quoteIdentifier } from '@mailroom/core/internal';
import { defineSaga } from '@mailroom/saga';
import { failurePoint, type SagaServiceContext } from './saga-participants.js';

/** The saga instances' name (one instance per order, its id the order id). */
export const CHAOS_SAGA_NAME = 'chaos-order';

const OrderState = z.object({
  orderId: z.uuid(),
  sku: z.string(),
  qty: z.number().int().positive(),
  amount: z.number().positive(),
  card: z.enum(['good', 'declined', 'slow']),
  step: z.enum(['reserving', 'charging', 'confirmed', 'cancelled']),
  timeoutId: z.string().nullable(),
});

type OrderState = z.output<typeof OrderState>;

/** How long the orchestrator waits for each participant. */
export interface SagaTimeouts {
  reserveTimeoutMs: number;
  paymentTimeoutMs: number;
}

/**
 * The orchestrator of the saga workload: reserve → charge → confirm (and commit the
 * reservation); out of stock cancels; a declined charge releases the stock and cancels; a step
 * without an answer in time is cancelled by its timeout and compensated (void the payment,
 * release the stock). Every step writes its ledger row and settles the order in its transaction.
 */
export function defineChaosOrderSaga(s: SagaServiceContext, timeouts: SagaTimeouts) {
  const t = quoteIdentifier(s.schema);
  const c = s.contracts;
  const key = (orderId: string): { key: string } => ({ key: orderId });
  const byOrder = (p: { orderId: string }): string => p.orderId;

  /** The harness's wrapping of a step: injected failures around it, a crash point, the ledger row. */
  async function applied<R>(
    ctx: { db: { query: (text: string, params?: unknown[]) => Promise<unknown> }; message: { messageId: string } },
    orderId: string,
    action: string,
    result: R,
    failure: 'after' | undefined,
  ): Promise<R> {
    crashPoint('chaos.handler.mid');
    await ctx.db.query(`INSERT INTO ${t}.saga_ledger (order_id, action, message_id, process, pid) VALUES ($1, $2, $3, $4, $5)`, [orderId, action, ctx.message.messageId, s.process, process.pid]);
    if (failure === 'after') throw new Error('chaos: transient handler failure after the step');
    return result;
  }
  const settle = (db: { query: (text: string, params?: unknown[]) => Promise<unknown> }, orderId: string, status: 'confirmed' | 'cancelled', reason: string | null): Promise<unknown> =>
    db.query(`UPDATE ${t}.saga_orders SET status = $2, cancel_reason = $3, settled_at = clock_timestamp() WHERE id = $1 AND status = 'pending'`, [orderId, status, reason]);
  const end = (ctx: { complete: () => void }, state: OrderState): OrderState => {
    ctx.complete();
    return state;
  };
  const stopTimer = async (cancel: (id: string) => Promise<unknown>, state: OrderState): Promise<void> => {
    if (state.timeoutId !== null) await cancel(state.timeoutId);
  };
  // Injected transient failures: before the step, or after it (its effects written) and before COMMIT.
  const begin = (): 'after' | undefined => {
    const failure = failurePoint(s.failureRate);
    if (failure === 'before') throw new Error('chaos: transient handler failure');
    return failure;
  };

  return defineSaga({
    name: CHAOS_SAGA_NAME,
    state: OrderState,
    steps: (step) => [
      step(c.OrderPlaced, {
        starts: true,
        correlate: byOrder,
        async handle(ctx) {
          const f = begin();
          if (ctx.state !== undefined) return applied(ctx, ctx.state.orderId, 'late-start', ctx.state, f);
          const p = ctx.payload;
          await ctx.send(c.ReserveInventory.create({ orderId: p.orderId, sku: p.sku, qty: p.qty }, key(p.orderId)));
          const timeoutId = await ctx.schedule(c.StepTimedOut.create({ orderId: p.orderId, step: 'reserve' }, key(p.orderId)), { delay: timeouts.reserveTimeoutMs });
          return applied(ctx, p.orderId, 'start', { ...p, step: 'reserving' as const, timeoutId }, f);
        },
      }),
      step(c.InventoryReserved, {
        correlate: byOrder,
        async handle(ctx) {
          const f = begin();
          const state = ctx.state;
          if (state.step !== 'reserving') return applied(ctx, state.orderId, 'late-reserved', state, f);
          await stopTimer(ctx.cancel, state);
          await ctx.send(c.ChargePayment.create({ orderId: state.orderId, amount: state.amount, card: state.card }, key(state.orderId)));
          const timeoutId = await ctx.schedule(c.StepTimedOut.create({ orderId: state.orderId, step: 'charge' }, key(state.orderId)), { delay: timeouts.paymentTimeoutMs });
          return applied(ctx, state.orderId, 'charging', { ...state, step: 'charging' as const, timeoutId }, f);
        },
      }),
      step(c.InventoryRejected, {
        correlate: byOrder,
        async handle(ctx) {
          const f = begin();
          const state = ctx.state;
          if (state.step !== 'reserving') return applied(ctx, state.orderId, 'late-rejected', state, f);
          await stopTimer(ctx.cancel, state);
          await settle(ctx.db, state.orderId, 'cancelled', 'out-of-stock');
          return applied(ctx, state.orderId, 'cancel', end(ctx, { ...state, step: 'cancelled' as const, timeoutId: null }), f);
        },
      }),
      step(c.PaymentCharged, {
        correlate: byOrder,
        async handle(ctx) {
          const f = begin();
          const state = ctx.state;
          if (state.step !== 'charging') return applied(ctx, state.orderId, 'late-charged', state, f);
          await stopTimer(ctx.cancel, state);
          await settle(ctx.db, state.orderId, 'confirmed', null);
          await ctx.send(c.CommitInventory.create({ orderId: state.orderId }, key(state.orderId)));
          return applied(ctx, state.orderId, 'confirm', end(ctx, { ...state, step: 'confirmed' as const, timeoutId: null }), f);
        },
      }),
      step(c.PaymentDeclined, {
        correlate: byOrder,
        async handle(ctx) {
          const f = begin();
          const state = ctx.state;
          if (state.step !== 'charging') return applied(ctx, state.orderId, 'late-declined', state, f);
          await stopTimer(ctx.cancel, state);
          await ctx.send(c.ReleaseInventory.create({ orderId: state.orderId }, key(state.orderId)));
          await settle(ctx.db, state.orderId, 'cancelled', 'payment-declined');
          return applied(ctx, state.orderId, 'cancel', end(ctx, { ...state, step: 'cancelled' as const, timeoutId: null }), f);
        },
      }),
      step(c.StepTimedOut, {
        correlate: byOrder,
        async handle(ctx) {
          const f = begin();
          const state = ctx.state;
          const waiting = ctx.payload.step === 'reserve' ? 'reserving' : 'charging';
          if (state.step !== waiting || ctx.message.messageId !== state.timeoutId) return applied(ctx, state.orderId, `late-timeout-${ctx.payload.step}`, state, f);
          // The participant may still answer: the compensations are tombstones for what comes later.
          if (ctx.payload.step === 'charge') await ctx.send(c.VoidPayment.create({ orderId: state.orderId }, key(state.orderId)));
          await ctx.send(c.ReleaseInventory.create({ orderId: state.orderId }, key(state.orderId)));
          await settle(ctx.db, state.orderId, 'cancelled', `${ctx.payload.step}-timeout`);
          return applied(ctx, state.orderId, 'cancel', end(ctx, { ...state, step: 'cancelled' as const, timeoutId: null }), f);
        },
      }),
    ],
  });
}
