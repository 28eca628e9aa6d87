import { z } from 'zod';
import { defineMessage, type MessageContract } from '@mailroom/core';
import type { HandlerContext } from '@mailroom/inbox';

/** The payload of the workload's events. */
export const chaosPayload = z.object({
  /** The event id, also the message id. */
  eventId: z.string(),
  key: z.string(),
  /** The producer worker that committed it. */
  producer: z.number().int(),
  /** Set only on injected poison: the harness handler throws a `NonRetryableError`. */
  poison: z.literal('throw').optional(),
});

/** The payload a chaos effect receives. */
export type ChaosPayload = z.output<typeof chaosPayload>;

/** The message type of the workload. */
export const CHAOS_EVENT_TYPE = 'chaos.event';

/** The contract of the workload's events, published to the run's exchange. */
export function chaosEvent(exchange: string): MessageContract<typeof CHAOS_EVENT_TYPE, typeof chaosPayload> {
  return defineMessage(CHAOS_EVENT_TYPE, chaosPayload, { exchange });
}

/**
 * Your handler under test: it runs inside the consumer's transaction (`tx`, `db`) before the
 * harness writes its ledger row in that same transaction. Export it as `effect` from the module
 * you name in `handlerModule`.
 */
export type ChaosEffect = (context: HandlerContext<ChaosPayload> & { schema: string }) => Promise<void>;

/** The consumers' retry policy: short delays, and enough attempts that faults alone never exhaust them. */
export const CHAOS_RETRY = { maxAttempts: 40, initialDelayMs: 100, multiplier: 2, maxDelayMs: 1000 } as const;
