import { z } from 'zod/v4';
import type { PgPoolLike } from '@mailroom/core';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** The most partitions a consumer may declare: partition queues are named with three digits (`.p000`…`.p998`). */
export const MAX_PARTITIONS = 999;

/**
 * Partitioned consumption: keyed messages are spread over `count` partition queues by
 * RabbitMQ's consistent-hash exchange (hashing the `x-mailroom-key` header), each queue with a
 * single active consumer, and the consumer processes of one name share the partitions through
 * leases in PostgreSQL (session advisory locks). See the README, "Partitions".
 */
export const partitionOptionsSchema = z.strictObject({
  /** How many partition queues (`<queue>.p000` …). Changing it moves keys: see the README. */
  count: z.number().int().min(1).max(MAX_PARTITIONS).meta({ description: 'how many partition queues (<queue>.p000 …)' }),
  /**
   * The pg Pool the lease session is borrowed from (one connection for the consumer's life).
   * Default: `db` when it is a pg Pool; required when `db` is a kysely instance.
   */
  pool: z
    .custom<PgPoolLike>((v) => isObject(v) && typeof v.connect === 'function' && typeof v.query === 'function', 'expected a pg Pool')
    .optional()
    .meta({ description: 'the pg Pool of the lease session', defaultText: 'db, when it is a pg Pool' }),
  /** How often the leases are renewed and rebalanced, in ms: a dead process's partitions move within about this. Default: 1000. */
  rebalanceMs: z.number().int().min(50).max(60_000).default(1000).meta({ description: 'how often leases are rebalanced (ms)' }),
  /**
   * How long a partition being handed over waits for its deliveries in flight before its channel
   * is closed (what is still unacked goes back to the head of the partition queue), in ms. Default: 10000.
   */
  handoverTimeoutMs: z.number().int().min(0).default(10_000).meta({ description: 'how long a handover waits for deliveries in flight (ms)' }),
});

/** Partition options with defaults filled in. */
export type PartitionOptions = z.output<typeof partitionOptionsSchema>;
