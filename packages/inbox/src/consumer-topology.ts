import { declareDeadLetterTopology, delayQueueName, type TopologyChannel } from '@mailroom/core/internal';
import type { QueueBinding } from './consumer-options.js';
import { retryDelays, type RetryPolicy } from './retry-policy.js';

/** What a consumer declares on the broker. */
export interface ConsumerTopology {
  /** The work queue. */
  queue: string;
  /** `classic` or `quorum`. */
  queueType: 'classic' | 'quorum';
  /** What the work queue is bound to. */
  bindings: readonly QueueBinding[];
  /** The retry policy: one delay queue per distinct delay. */
  retry: RetryPolicy;
  /** The dead-letter exchange and queue. */
  deadLetters: { exchange: string; queue: string };
}

/** The delay queues of `queue` under `retry`, one per distinct retry delay, by delay in ms. */
export function delayQueuesOf(queue: string, retry: RetryPolicy): Map<number, string> {
  return new Map([...new Set(retryDelays(retry))].map((ms) => [ms, delayQueueName(queue, ms)]));
}

/**
 * Declares the dead-letter topology, the work queue with its bindings, and the delay queues.
 * Idempotent: it runs on every fresh channel, so a queue deleted under a running consumer comes back.
 */
export async function declareConsumerTopology(channel: TopologyChannel, topology: ConsumerTopology): Promise<void> {
  // Declared first: a dead letter published before any sink ever ran is still kept.
  await declareDeadLetterTopology(channel, topology.deadLetters);
  await channel.assertQueue(topology.queue, { durable: true, arguments: { 'x-queue-type': topology.queueType } });
  for (const b of topology.bindings) {
    await channel.assertExchange(b.exchange, 'topic', { durable: true });
    await channel.bindQueue(topology.queue, b.exchange, b.routingKey);
  }
  // Delay queues: a per-queue TTL, then the broker dead-letters the message through the
  // default exchange straight back to the work queue (not to the exchange, so other consumers
  // bound to it never see a retry).
  for (const [ms, name] of delayQueuesOf(topology.queue, topology.retry)) {
    await channel.assertQueue(name, {
      durable: true,
      arguments: { 'x-queue-type': 'classic', 'x-message-ttl': ms, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': topology.queue },
    });
  }
}
