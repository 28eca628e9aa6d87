/** Where dead letters wait on the broker until a sink stores them. */
export interface DeadLetterTopology {
  /** The durable topic exchange consumers publish dead letters to. Default: `mailroom.dead-letters`. */
  exchange?: string;
  /** The durable queue bound to it (`#`) that the sink drains. Default: `mailroom.dead-letters`. */
  queue?: string;
}

/** The default dead-letter exchange and queue name. */
export const DEFAULT_DEAD_LETTERS = 'mailroom.dead-letters';

/** The channel operations the topology needs (an amqplib Channel or ConfirmChannel has them). */
export interface TopologyChannel {
  assertExchange(exchange: string, type: string, options?: { durable?: boolean }): Promise<unknown>;
  assertQueue(queue: string, options?: { durable?: boolean; arguments?: Record<string, unknown> }): Promise<unknown>;
  bindQueue(queue: string, source: string, pattern: string): Promise<unknown>;
}

/** Fills in the defaults of a {@link DeadLetterTopology}. */
export function resolveDeadLetterTopology(topology: DeadLetterTopology = {}): Required<DeadLetterTopology> {
  return { exchange: topology.exchange ?? DEFAULT_DEAD_LETTERS, queue: topology.queue ?? DEFAULT_DEAD_LETTERS };
}

/**
 * Declares the dead-letter exchange and queue. Idempotent, so every consumer and every sink
 * declares it at start: a dead letter published before any sink ever ran is still kept.
 */
export async function declareDeadLetterTopology(channel: TopologyChannel, topology: DeadLetterTopology = {}): Promise<Required<DeadLetterTopology>> {
  const resolved = resolveDeadLetterTopology(topology);
  await channel.assertExchange(resolved.exchange, 'topic', { durable: true });
  await channel.assertQueue(resolved.queue, { durable: true });
  await channel.bindQueue(resolved.queue, resolved.exchange, '#');
  return resolved;
}

/**
 * The delay queue a consumer's retries wait in for `delayMs` before the broker moves them back
 * to `queue` (the one place this name is derived: the consumer, the chaos harness and the
 * examples' clean-up all call it).
 */
export function delayQueueName(queue: string, delayMs: number): string {
  return `${queue}.retry.${delayMs}ms`;
}
