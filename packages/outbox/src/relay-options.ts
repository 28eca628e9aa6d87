import { z } from 'zod';
import { DEFAULT_SCHEMA, parseConfig, validateIdentifier, type AmqpConnection, type Logger, type MetricsRegistry, type PgPoolLike } from '@mailroom/core';

/** Options of {@link createRelay}. Every field but `database` and `amqp` has a default. */
export interface RelayOptions {
  /** A PostgreSQL URL, or a `pg` Pool the relay borrows connections from (it never ends a pool it did not create). */
  database: string | PgPoolLike;
  /** A RabbitMQ URL, or a recovering connection from `createAmqpConnection` (not closed by the relay). */
  amqp: string | AmqpConnection;
  /** Schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** Rows claimed and published per batch. Default: 500. */
  batchSize?: number;
  /** Batches in flight at once (without ordering). Default: 3. */
  concurrency?: number;
  /** Poll interval in ms: the safety net when a NOTIFY is lost. Default: 1000. */
  pollIntervalMs?: number;
  /** How long a batch waits for publisher confirms before its unconfirmed rows are retried. Default: 10000. */
  publishTimeoutMs?: number;
  /** First retry delay of a row in ms; doubles per attempt, with jitter. Default: 500. */
  retryInitialDelayMs?: number;
  /** Longest retry delay of a row in ms. Default: 60000. */
  retryMaxDelayMs?: number;
  /** Attempts after which a row the broker keeps returning as unroutable becomes a dead letter. Default: 10. */
  maxUnroutableAttempts?: number;
  /** Largest payload in bytes; a larger row becomes a dead letter at once. Default: 4194304 (4 MiB). */
  maxMessageBytes?: number;
  /** Publish each key's events in outbox order, across relay instances. Default: false. */
  ordering?: boolean;
  /** Partitions of the key space leased among relays in ordering mode; the same on every instance. Default: 64. */
  partitions?: number;
  /** How often a relay in ordering mode renews and rebalances its leases, in ms. Default: 1000. */
  leaseHeartbeatMs?: number;
  /** Declare a missing exchange as a durable topic exchange instead of failing the row. Default: true. */
  declareExchanges?: boolean;
  /** How long `stop()` waits for the batch in flight, in ms. Default: 30000. */
  shutdownTimeoutMs?: number;
  /** Instance name, in logs and as the connection names. Default: `mailroom-relay-<pid>`. */
  name?: string;
  /** Where the relay logs. Default: silent. */
  logger?: Logger;
  /** Registry the relay's metrics are added to. Default: a new one (`relay.metrics`). */
  metrics?: MetricsRegistry;
}

const positiveInt = z.number().int().positive();

const schema = z.strictObject({
  database: z.union([z.string().min(1), z.custom<PgPoolLike>((v) => typeof v === 'object' && v !== null && 'connect' in v, 'expected a pg Pool')]),
  amqp: z.union([z.string().min(1), z.custom<AmqpConnection>((v) => typeof v === 'object' && v !== null && 'get' in v, 'expected an AmqpConnection')]),
  schema: z.string().default(DEFAULT_SCHEMA),
  batchSize: positiveInt.max(10_000).default(500),
  concurrency: positiveInt.max(32).default(3),
  pollIntervalMs: positiveInt.default(1000),
  publishTimeoutMs: positiveInt.default(10_000),
  retryInitialDelayMs: positiveInt.default(500),
  retryMaxDelayMs: positiveInt.default(60_000),
  maxUnroutableAttempts: positiveInt.default(10),
  maxMessageBytes: positiveInt.default(4 * 1024 * 1024),
  ordering: z.boolean().default(false),
  partitions: positiveInt.max(4096).default(64),
  leaseHeartbeatMs: positiveInt.default(1000),
  declareExchanges: z.boolean().default(true),
  shutdownTimeoutMs: positiveInt.default(30_000),
  name: z.string().min(1).default(`mailroom-relay-${process.pid}`),
  logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null && 'warn' in v, 'expected a Logger').optional(),
  metrics: z.custom<MetricsRegistry>((v) => typeof v === 'object' && v !== null && 'render' in v, 'expected a MetricsRegistry').optional(),
});

/** Relay options with every default filled in. */
export type ResolvedRelayOptions = z.output<typeof schema>;

/** Validates relay options, naming every unknown key and every bad value. */
export function resolveRelayOptions(options: RelayOptions): ResolvedRelayOptions {
  const resolved = parseConfig(schema, options, 'relay options');
  validateIdentifier(resolved.schema);
  return resolved;
}
