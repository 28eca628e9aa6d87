import { MailroomError, describeError } from '@mailroom/core';
import { declareDeadLetterTopology, delayQueueName, type TopologyChannel } from '@mailroom/core/internal';
import type { QueueBinding } from './consumer-options.js';
import { CONSISTENT_HASH_PLUGIN, declarePartitionTopology, type PartitionTopologyChannel } from './partition-topology.js';
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
  /** Partitioned: partition queues behind a consistent-hash exchange instead of the work queue and its delay queues. */
  partitions?: { count: number } | undefined;
}

interface ErrorEmitter {
  on(event: 'error', listener: (error: unknown) => void): unknown;
  removeListener(event: 'error', listener: (error: unknown) => void): unknown;
}

const isEmitter = (v: unknown): v is ErrorEmitter =>
  typeof v === 'object' && v !== null && typeof (v as { on?: unknown }).on === 'function' && typeof (v as { removeListener?: unknown }).removeListener === 'function';

/** The delay queues of `queue` under `retry`, one per distinct retry delay, by delay in ms. */
export function delayQueuesOf(queue: string, retry: RetryPolicy): Map<number, string> {
  return new Map([...new Set(retryDelays(retry))].map((ms) => [ms, delayQueueName(queue, ms)]));
}

/**
 * Declares the dead-letter topology, the work queue with its bindings, and the delay queues (or,
 * partitioned, the consistent-hash exchange and the partition queues instead).
 * Idempotent: it runs on every fresh channel, so a queue deleted under a running consumer comes back.
 */
export async function declareConsumerTopology(channel: TopologyChannel & PartitionTopologyChannel, topology: ConsumerTopology): Promise<void> {
  // Declared first: a dead letter published before any sink ever ran is still kept.
  await declareDeadLetterTopology(channel, topology.deadLetters);
  if (topology.partitions !== undefined) {
    // Failures are retried in place when partitioned (see failure-routing.ts): no delay queues.
    // Without the plugin RabbitMQ answers 503 COMMAND_INVALID "unknown exchange type", a
    // connection error: the channel's call only hears "Channel ended", the connection's 'error' says why.
    const connection = (channel as { connection?: unknown }).connection;
    const emitter = isEmitter(connection) ? connection : undefined;
    let closedWith: unknown;
    const capture = (error: unknown): void => {
      closedWith = error;
    };
    emitter?.on('error', capture);
    try {
      await declarePartitionTopology(channel, { ...topology, count: topology.partitions.count });
    } catch (error) {
      if (/exchange type/i.test(`${describeError(error)} ${closedWith === undefined ? '' : describeError(closedWith)}`)) {
        throw new MailroomError(
          'INVALID_CONFIG',
          `Partitioned consumers need RabbitMQ's consistent-hash exchange: enable it on every node with \`rabbitmq-plugins enable ${CONSISTENT_HASH_PLUGIN}\` (${describeError(closedWith ?? error)})`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      emitter?.removeListener('error', capture);
    }
    return;
  }
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
