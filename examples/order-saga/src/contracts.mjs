// The saga's events, all on one topic exchange per prefix. Every event is keyed by the order id.
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';

/** The saga exchange for a prefix (EXAMPLE_PREFIX). */
export const sagaExchange = (prefix) => `${prefix}.saga`;

/** A card number that payments always declines (as card processors' test numbers do). */
export const DECLINED_CARD = '4000000000000002';

export function sagaContracts(prefix) {
  const exchange = sagaExchange(prefix);
  const order = { orderId: z.uuid(), sku: z.string().min(1), qty: z.number().int().positive(), amount: z.number().positive() };
  return {
    /** orders → inventory: please reserve. */
    OrderPlaced: defineMessage('order.placed', z.object({ ...order, card: z.string().min(1) }), { exchange }),
    /** inventory → payments: reserved, please charge (the card travels with the saga). */
    StockReserved: defineMessage('stock.reserved', z.object({ ...order, card: z.string().min(1) }), { exchange }),
    /** inventory → orders: cannot reserve; the saga ends, nothing to undo. */
    StockRejected: defineMessage('stock.rejected', z.object({ ...order, reason: z.string() }), { exchange }),
    /** payments → orders: charged; the order is confirmed. */
    PaymentCharged: defineMessage('payment.charged', z.object({ orderId: z.uuid(), amount: z.number().positive() }), { exchange }),
    /** payments → inventory (release the stock) and orders (cancel): the compensations. */
    PaymentDeclined: defineMessage('payment.declined', z.object({ orderId: z.uuid(), amount: z.number().positive(), reason: z.string() }), { exchange }),
    /** orders → inventory: the reservation is final. */
    OrderConfirmed: defineMessage('order.confirmed', z.object({ orderId: z.uuid() }), { exchange }),
  };
}
