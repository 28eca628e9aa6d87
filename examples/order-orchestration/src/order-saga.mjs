// The orchestrator: one durable saga per order, driving inventory and payments with commands.
//
//   order.placed ──▶ reserve ──▶ inventory.reserved ──▶ charge ──▶ payment.charged ──▶ confirmed (+ inventory.commit)
//                        │                                  │
//                        ├─ inventory.rejected ─▶ cancelled ├─ payment.declined ─▶ release stock, cancelled
//                        └─ no answer in time ─▶ release,   └─ no answer in time ─▶ void payment, release stock, cancelled
//                                               cancelled
//
// Each step runs in the orders consumer's inbox transaction with the instance row locked: the
// commands it sends (through the outbox), the timeout it schedules or cancels, the order row it
// settles and the new saga state commit together, once, or not at all.
import { z } from 'zod';
import { defineSaga } from '@mailroom/saga';

const OrderState = z.object({
  orderId: z.uuid(),
  sku: z.string(),
  qty: z.number().int().positive(),
  amount: z.number().positive(),
  card: z.string(),
  /** Where the saga waits: for inventory, for payments, or nowhere (it ended). */
  step: z.enum(['reserving', 'charging', 'confirmed', 'cancelled']),
  /** The scheduled StepTimedOut of the step it waits in. */
  timeoutId: z.string().nullable(),
  reason: z.string().nullable(),
});

/**
 * The order saga of this example.
 * @param {object} o
 * @param {ReturnType<import('./contracts.mjs').orchestrationContracts>} o.contracts
 * @param {number} o.reserveTimeoutMs  how long it waits for inventory
 * @param {number} o.paymentTimeoutMs  how long it waits for payments
 * @param {(line: string) => void} o.log
 */
export function defineOrderSaga({ contracts, reserveTimeoutMs, paymentTimeoutMs, log }) {
  const { OrderPlaced, ReserveInventory, ReleaseInventory, CommitInventory, InventoryReserved, InventoryRejected, ChargePayment, VoidPayment, PaymentCharged, PaymentDeclined, StepTimedOut } =
    contracts;
  const byOrder = (payload) => payload.orderId;
  const keyed = (orderId) => ({ key: orderId });
  const short = (id) => id.slice(0, 8);
  // Every step the orchestrator applies leaves one row: the demo counts them (never two per message).
  const record = (tx, message, orderId) => tx.query('INSERT INTO handled_log (message_id, type, order_id) VALUES ($1, $2, $3)', [message.messageId, message.type, orderId]);
  // confirmOrder / cancelOrder: the orders service's own local transactions, in the step's.
  const settle = (tx, orderId, status, reason) =>
    tx.query("UPDATE orders SET status = $2, cancel_reason = $3, settled_at = now() WHERE id = $1 AND status = 'pending'", [orderId, status, reason]);
  // The timeout of the step the saga leaves: cancelled in the same transaction (if it already
  // left the outbox, it arrives and finds the saga moved on).
  const stopTimer = async (cancel, state) => {
    if (state.timeoutId !== null) await cancel(state.timeoutId);
  };
  const cancelled = async ({ state, tx, complete }, reason) => {
    await settle(tx, state.orderId, 'cancelled', reason);
    complete();
    log(`order ${short(state.orderId)} cancelled (${reason})`);
    return { ...state, step: 'cancelled', timeoutId: null, reason };
  };

  return defineSaga({
    name: 'order-fulfilment',
    state: OrderState,
    steps: (step) => [
      // createOrder committed the order with this event; the saga starts here.
      step(OrderPlaced, {
        starts: true,
        correlate: byOrder,
        async handle({ state, payload, tx, message, send, schedule }) {
          if (state !== undefined) return state; // the same order placed twice changes nothing
          await record(tx, message, payload.orderId);
          await send(ReserveInventory.create({ orderId: payload.orderId, sku: payload.sku, qty: payload.qty }, keyed(payload.orderId)));
          const timeoutId = await schedule(StepTimedOut.create({ orderId: payload.orderId, step: 'reserve' }, keyed(payload.orderId)), { delay: reserveTimeoutMs });
          log(`order ${short(payload.orderId)}: saga started → inventory.reserve`);
          return { ...payload, step: 'reserving', timeoutId, reason: null };
        },
      }),
      step(InventoryReserved, {
        correlate: byOrder,
        async handle({ state, tx, message, send, schedule, cancel }) {
          await record(tx, message, state.orderId);
          if (state.step !== 'reserving') return state; // late: the reservation already timed out (and is released)
          await stopTimer(cancel, state);
          await send(ChargePayment.create({ orderId: state.orderId, amount: state.amount, card: state.card }, keyed(state.orderId)));
          const timeoutId = await schedule(StepTimedOut.create({ orderId: state.orderId, step: 'charge' }, keyed(state.orderId)), { delay: paymentTimeoutMs });
          log(`order ${short(state.orderId)}: stock reserved → payment.charge (waits ${paymentTimeoutMs} ms)`);
          return { ...state, step: 'charging', timeoutId };
        },
      }),
      step(InventoryRejected, {
        correlate: byOrder,
        async handle(ctx) {
          await record(ctx.tx, ctx.message, ctx.state.orderId);
          if (ctx.state.step !== 'reserving') return ctx.state;
          await stopTimer(ctx.cancel, ctx.state);
          // Nothing reserved, nothing charged: nothing to compensate.
          return cancelled(ctx, ctx.payload.reason);
        },
      }),
      step(PaymentCharged, {
        correlate: byOrder,
        async handle({ state, tx, message, send, cancel, complete }) {
          await record(tx, message, state.orderId);
          if (state.step !== 'charging') return state;
          await stopTimer(cancel, state);
          await settle(tx, state.orderId, 'confirmed', null);
          await send(CommitInventory.create({ orderId: state.orderId }, keyed(state.orderId)));
          complete();
          log(`order ${short(state.orderId)} confirmed`);
          return { ...state, step: 'confirmed', timeoutId: null };
        },
      }),
      step(PaymentDeclined, {
        correlate: byOrder,
        async handle(ctx) {
          await record(ctx.tx, ctx.message, ctx.state.orderId);
          if (ctx.state.step !== 'charging') return ctx.state;
          await stopTimer(ctx.cancel, ctx.state);
          // The compensation of the reservation.
          await ctx.send(ReleaseInventory.create({ orderId: ctx.state.orderId }, keyed(ctx.state.orderId)));
          return cancelled(ctx, 'payment-declined');
        },
      }),
      // A step that waited too long. Only the timeout the state still waits for acts: one that
      // fires after the saga moved on (its cancel raced the relay) changes nothing.
      step(StepTimedOut, {
        correlate: byOrder,
        async handle(ctx) {
          const { state, payload } = ctx;
          await record(ctx.tx, ctx.message, state.orderId);
          if (ctx.message.messageId !== state.timeoutId) return state;
          if (payload.step === 'reserve' && state.step === 'reserving') {
            // The reservation may still arrive: inventory keeps the release as a tombstone.
            await ctx.send(ReleaseInventory.create({ orderId: state.orderId }, keyed(state.orderId)));
            return cancelled(ctx, 'inventory-timeout');
          }
          if (payload.step === 'charge' && state.step === 'charging') {
            // Payments may charge late: the void refunds a charge it finds, refuses one that comes after it.
            await ctx.send(VoidPayment.create({ orderId: state.orderId }, keyed(state.orderId)));
            await ctx.send(ReleaseInventory.create({ orderId: state.orderId }, keyed(state.orderId)));
            return cancelled(ctx, 'payment-timeout');
          }
          return state;
        },
      }),
    ],
  });
}
