import { randomBytes } from 'node:crypto';
import { migrate } from '@mailroom/core';
import { delayQueueName, quoteIdentifier } from '@mailroom/core/internal';
import { retryDelays } from '@mailroom/inbox';
import type { AdminLinks } from './admin-links.js';
import { CHAOS_RETRY } from './chaos-event.js';
import type { ChaosDbContext } from './chaos-options.js';
import { workloadKeys, workloadTablesSql } from './workload.js';

/**
 * The names of everything a run creates, all derived from one random id, so that runs on a
 * shared server never meet and the clean-up knows what to remove.
 */
export interface RunResources {
  runId: string;
  /** The run's schema: mailroom's tables, the workload's and the user's. */
  schema: string;
  /** The topic exchange the workload publishes to. */
  exchange: string;
  /** The consumers' work queue. */
  queue: string;
  /** The consumers' delay queues (one per distinct retry delay of `CHAOS_RETRY`). */
  delayQueues: string[];
  /** Partitioned: the partition queues (instead of `queue` and `delayQueues`); otherwise empty. */
  partitionQueues: string[];
  /** Partitioned: the consistent-hash exchange in front of them. */
  partitionExchange: string | undefined;
  /** The dead-letter exchange and queue (one name for both). */
  deadLetters: string;
  /**
   * Where the dead-letter sink moves a letter the store refuses even in minimal form: the sink's
   * `parkedQueue`, `<dead-letter queue>.parked` (named by `@mailroom/dlq`).
   */
  parkedDeadLetters: string;
  /** The consumer name in the inbox (one for every consumer process). */
  consumerName: string;
  /** `application_name` prefix of every session of the run's processes. */
  applicationPrefix: string;
}

/** Names the resources of a new run (with `partitions`, its partition queues too). */
export function nameRunResources(runId = randomBytes(3).toString('hex'), partitions?: number): RunResources {
  const queue = `chaos.${runId}.work`;
  return {
    // As @mailroom/inbox names them (partition-topology.ts): `<queue>.p000`…, `<queue>.partitions`.
    partitionQueues: partitions === undefined ? [] : Array.from({ length: partitions }, (_, i) => `${queue}.p${String(i).padStart(3, '0')}`),
    partitionExchange: partitions === undefined ? undefined : `${queue}.partitions`,
    runId,
    schema: `chaos_${runId}`,
    exchange: `chaos.${runId}`,
    queue,
    delayQueues: [...new Set(retryDelays(CHAOS_RETRY))].map((ms) => delayQueueName(queue, ms)),
    deadLetters: `chaos.${runId}.dead`,
    parkedDeadLetters: `chaos.${runId}.dead.parked`,
    consumerName: `chaos-${runId}`,
    applicationPrefix: `mailroom-chaos-${runId}-`,
  };
}

/**
 * Creates the run's schema (mailroom's migrations, the workload's tables, then the user's
 * `setup`) and its exchange. The queues are the consumers' to declare.
 */
export async function createRunResources(
  links: AdminLinks,
  r: RunResources,
  keys: number,
  setup: ((context: ChaosDbContext) => Promise<void>) | undefined,
): Promise<void> {
  await links.pool.query(`CREATE SCHEMA ${quoteIdentifier(r.schema)}`);
  await migrate(links.pool, { schema: r.schema });
  await links.pool.query(workloadTablesSql(r.schema, keys));
  await setup?.({ query: links.query, schema: r.schema, keys: workloadKeys(keys) });
  const channel = await links.channel();
  await channel.assertExchange(r.exchange, 'topic', { durable: true });
}

/** Removes the run's queues, exchanges and schema; never rejects. */
export async function removeRunResources(links: AdminLinks, r: RunResources): Promise<void> {
  const channel = await links.channel().catch(() => undefined);
  for (const queue of [r.queue, ...r.delayQueues, ...r.partitionQueues, r.deadLetters, r.parkedDeadLetters]) await channel?.deleteQueue(queue).catch(() => undefined);
  for (const exchange of [r.exchange, r.deadLetters, ...(r.partitionExchange === undefined ? [] : [r.partitionExchange])]) await channel?.deleteExchange(exchange).catch(() => undefined);
  await links.pool.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(r.schema)} CASCADE`).catch(() => undefined);
}
