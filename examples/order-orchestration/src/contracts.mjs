// The orchestrated saga's messages: commands from the orchestrator (in the orders service) to
// inventory and payments, their replies, and the two scheduled messages (the orchestrator's step
// timeout, the simulated card processor's late answer). All on one topic exchange per prefix,
// routed by type, every one keyed by the order id.
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';

/** The exchange of this example for a prefix (EXAMPLE_PREFIX). */
export const orchestrationExchange = (prefix) => `${prefix}.orchestration`;

/** A card number that payments always declines (as card processors' test numbers do). */
export const DECLINED_CARD = '4000000000000002';
/** A card whose (simulated) processor answers only after PROCESSOR_DELAY_MS: longer than the orchestrator waits. */
export const SLOW_CARD = '4000000000000259';

export function orchestrationContracts(prefix) {
  const exchange = orchestrationExchange(prefix);
  const orderId = z.uuid();
  // Bounded and plain: a NUL byte, a control character or a megabyte of SKU is refused at the door (400).
  const line = { orderId, sku: z.string().regex(/^[\w.-]{1,100}$/), qty: z.number().int().positive().max(1000) };
  const money = z.number().positive().max(1_000_000);
  return {
    /** orders → its own orchestrator: an order was created (committed with the order row); starts a saga. */
    OrderPlaced: defineMessage('order.placed', z.object({ ...line, amount: money, card: z.string().regex(/^[\d ]{12,23}$/) }), { exchange }),
    /** orchestrator → inventory. */
    ReserveInventory: defineMessage('inventory.reserve', z.object(line), { exchange }),
    /** orchestrator → inventory: the compensation (also when the reservation has not arrived yet). */
    ReleaseInventory: defineMessage('inventory.release', z.object({ orderId }), { exchange }),
    /** orchestrator → inventory: the order is confirmed, the reservation final. */
    CommitInventory: defineMessage('inventory.commit', z.object({ orderId }), { exchange }),
    /** inventory → orchestrator. */
    InventoryReserved: defineMessage('inventory.reserved', z.object({ orderId }), { exchange }),
    /** inventory → orchestrator: out of stock (or released before it arrived). */
    InventoryRejected: defineMessage('inventory.rejected', z.object({ orderId, reason: z.string().max(200) }), { exchange }),
    /** orchestrator → payments. */
    ChargePayment: defineMessage('payment.charge', z.object({ orderId, amount: money, card: z.string().regex(/^[\d ]{12,23}$/) }), { exchange }),
    /** orchestrator → payments: the compensation: void a pending charge, refund a charge already taken, refuse a charge not yet asked for. */
    VoidPayment: defineMessage('payment.void', z.object({ orderId }), { exchange }),
    /** payments → orchestrator. */
    PaymentCharged: defineMessage('payment.charged', z.object({ orderId, amount: money }), { exchange }),
    /** payments → orchestrator. */
    PaymentDeclined: defineMessage('payment.declined', z.object({ orderId, reason: z.string().max(200) }), { exchange }),
    /** payments → payments, scheduled: the slow card processor answers (the simulated processor's latency). */
    ProcessorAnswered: defineMessage('payment.processor-answered', z.object({ orderId }), { exchange }),
    /** orchestrator → itself, scheduled: a step waited too long for its reply. */
    StepTimedOut: defineMessage('order.step-timed-out', z.object({ orderId, step: z.enum(['reserve', 'charge']) }), { exchange }),
  };
}
