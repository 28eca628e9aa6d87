import { z } from 'zod/v4';
import { defineMessage } from '@mailroom/core';

/** The cards of the saga workload: one answered at once, one declined, one whose processor answers after the payment timeout. */
export const SAGA_CARDS = { good: 'good', declined: 'declined', slow: 'slow' } as const;

/** A saga workload card. */
export type SagaCard = keyof typeof SAGA_CARDS;

const orderId = z.uuid();
const card = z.enum(['good', 'declined', 'slow']);

/**
 * The messages of the saga workload, on the run's exchange (routed by type): the order that
 * starts a saga, the orchestrator's commands to inventory and payments, their replies, and the
 * scheduled ones (the orchestrator's step timeouts, the slow processor's late answer).
 */
export function sagaContracts(exchange: string) {
  const o = { exchange };
  return {
    OrderPlaced: defineMessage('chaos.saga.order-placed', z.object({ orderId, sku: z.string(), qty: z.number().int().positive(), amount: z.number().positive(), card }), o),
    ReserveInventory: defineMessage('chaos.saga.reserve', z.object({ orderId, sku: z.string(), qty: z.number().int().positive() }), o),
    ReleaseInventory: defineMessage('chaos.saga.release', z.object({ orderId }), o),
    CommitInventory: defineMessage('chaos.saga.commit', z.object({ orderId }), o),
    InventoryReserved: defineMessage('chaos.saga.reserved', z.object({ orderId }), o),
    InventoryRejected: defineMessage('chaos.saga.rejected', z.object({ orderId }), o),
    ChargePayment: defineMessage('chaos.saga.charge', z.object({ orderId, amount: z.number().positive(), card }), o),
    VoidPayment: defineMessage('chaos.saga.void', z.object({ orderId }), o),
    PaymentCharged: defineMessage('chaos.saga.charged', z.object({ orderId }), o),
    PaymentDeclined: defineMessage('chaos.saga.declined', z.object({ orderId }), o),
    ProcessorAnswered: defineMessage('chaos.saga.processor-answered', z.object({ orderId }), o),
    StepTimedOut: defineMessage('chaos.saga.timed-out', z.object({ orderId, step: z.enum(['reserve', 'charge']) }), o),
  };
}

/** The saga workload's contracts. */
export type SagaContracts = ReturnType<typeof sagaContracts>;
