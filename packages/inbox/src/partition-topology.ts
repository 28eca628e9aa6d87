import type { QueueBinding } from './consumer-options.js';

/** The header the consistent-hash exchange hashes on: the event's ordering key (see `@mailroom/core`'s envelope). */
export const PARTITION_HASH_HEADER = 'x-mailroom-key';

/** The RabbitMQ plugin that provides the `x-consistent-hash` exchange type. */
export const CONSISTENT_HASH_PLUGIN = 'rabbitmq_consistent_hash_exchange';

/**
 * The name of partition `index` of `queue`: `<queue>.p000` … Three digits always, so that names
 * sort in partition order: when a node restarts, RabbitMQ rebuilds the exchange's hash ring from
 * its bindings sorted by queue name, and equal order is what keeps every key on its partition.
 */
export function partitionQueueName(queue: string, index: number): string {
  return `${queue}.p${String(index).padStart(3, '0')}`;
}

/** The consistent-hash exchange of a partitioned consumer: `<queue>.partitions`. */
export function partitionExchangeName(queue: string): string {
  return `${queue}.partitions`;
}

/** Every partition queue of `queue`, in partition order. */
export function partitionQueuesOf(queue: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => partitionQueueName(queue, i));
}

/** The arguments of a partition queue: the queue type, and one active consumer at a time. */
export function partitionQueueArguments(queueType: 'classic' | 'quorum'): Record<string, unknown> {
  return { 'x-queue-type': queueType, 'x-single-active-consumer': true };
}

/** What {@link declarePartitionTopology} needs of a channel (an amqplib channel fits). */
export interface PartitionTopologyChannel {
  assertExchange(exchange: string, type: string, options: { durable: boolean; arguments?: Record<string, unknown> }): Promise<unknown>;
  assertQueue(queue: string, options: { durable: boolean; arguments?: Record<string, unknown> }): Promise<unknown>;
  bindQueue(queue: string, source: string, pattern: string): Promise<unknown>;
  bindExchange(destination: string, source: string, pattern: string): Promise<unknown>;
}

/**
 * Declares a partitioned consumer's topology: the consistent-hash exchange (hashing the ordering
 * key header), bound to each source exchange with an exchange-to-exchange binding, and the
 * partition queues bound to it with weight 1, in partition order. Idempotent: binding a queue
 * that is bound already leaves the ring as it is.
 */
export async function declarePartitionTopology(
  channel: PartitionTopologyChannel,
  topology: { queue: string; queueType: 'classic' | 'quorum'; bindings: readonly QueueBinding[]; count: number },
): Promise<void> {
  const exchange = partitionExchangeName(topology.queue);
  await channel.assertExchange(exchange, 'x-consistent-hash', { durable: true, arguments: { 'hash-header': PARTITION_HASH_HEADER } });
  // The queues are bound before the sources: nothing is routed to a ring that is still filling.
  // In partition order, so the ring's buckets are in name order (see partitionQueueName).
  for (const name of partitionQueuesOf(topology.queue, topology.count)) {
    await channel.assertQueue(name, { durable: true, arguments: partitionQueueArguments(topology.queueType) });
    await channel.bindQueue(name, exchange, '1');
  }
  for (const b of topology.bindings) {
    await channel.assertExchange(b.exchange, 'topic', { durable: true });
    await channel.bindExchange(exchange, b.exchange, b.routingKey);
  }
}
