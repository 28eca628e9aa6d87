import { z } from 'zod/v4';
import { defineMessage, type MessageContract } from '@mailroom/core';
import type { HandlerContext } from '@mailroom/inbox';

/** The payload of the workload's events. */
export const chaosPayload = z.object({
  /** The event id, also the message id. */
  eventId: z.string(),
  key: z.string(),
  /** The producer worker that committed it. */
  producer: z.number().int(),
  /**
   * Set only on injected poison and hostile messages: `throw` makes the harness's handler throw a
   * `NonRetryableError`, `transient` a plain error on every attempt (so the retries run out).
   */
  poison: z.enum(['throw', 'transient']).optional(),
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

/**
 * The consumers' retry policy: short delays, and enough attempts that the injected 2 % of
 * transient failures never exhaust them (database errors use no attempt), yet few enough that a
 * hostile message failing on every attempt ends as a dead letter within ~9 s.
 */
export const CHAOS_RETRY = { maxAttempts: 12, initialDelayMs: 100, multiplier: 2, maxDelayMs: 1000 } as const;
