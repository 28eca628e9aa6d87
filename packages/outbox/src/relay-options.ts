import { z } from 'zod/v4';
import { DEFAULT_SCHEMA, MailroomError, type AmqpConnection, type Logger, type MetricsRegistry, type PgPoolLike } from '@mailroom/core';
import { isKysely, parseConfig, validateIdentifier } from '@mailroom/core/internal';

const positiveInt = z.number().int().positive();
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/**
 * The relay's options: the single source of each option's type, default and description. The
 * `mailroom relay` sidecar derives its environment variables (`env`, or `MAILROOM_` + the name in
 * upper snake case) and its `--help` from this schema, so the two cannot drift.
 */
export const relayOptionsSchema = z.strictObject({
  /**
   * A PostgreSQL URL, or a `pg` Pool the relay borrows connections from (it never ends a pool it did
   * not create). Not a kysely instance: give the relay the Pool your `PostgresDialect` was made with.
   */
  database: z
    .union([z.string().min(1), z.custom<PgPoolLike>((v) => isObject(v) && 'connect' in v, 'expected a pg Pool')])
    .meta({ env: 'MAILROOM_DATABASE_URL', description: 'PostgreSQL URL, e.g. postgres://user:pass@host:5432/db (required)' }),
  /**
   * A RabbitMQ URL, several URLs of one cluster (tried in turn), or a recovering connection from
   * `createAmqpConnection` (not closed by the relay; the way to give TLS options or EXTERNAL auth).
   */
  amqp: z
    .union([
      z.string().min(1),
      z.array(z.string().min(1)).min(1),
      z.custom<AmqpConnection>((v) => isObject(v) && !Array.isArray(v) && 'get' in v, 'expected an AmqpConnection'),
    ])
    .meta({ env: 'MAILROOM_AMQP_URL', description: 'RabbitMQ URL, e.g. amqp://user:pass@host:5672/vhost (required)' }),
  /** Schema of mailroom's tables. Default: `mailroom`. */
  schema: z.string().default(DEFAULT_SCHEMA).meta({ description: "schema of mailroom's tables" }),
  /**
   * Rows claimed and published per batch. Default: 1000 (with `concurrency` 2 it drained a backlog
   * 1.08 × as fast as 500 × 3 on a 2-core machine, with less PostgreSQL CPU per row; see the README).
   */
  batchSize: positiveInt.max(10_000).default(1000).meta({ description: 'rows claimed and published per batch' }),
  /** Batches in flight at once (without ordering). Default: 2: one publishes while the other claims or settles. */
  concurrency: positiveInt.max(32).default(2).meta({ description: 'batches in flight at once (without ordering)' }),
  /** Poll interval in ms: the safety net when a NOTIFY is lost. Default: 1000. */
  pollIntervalMs: positiveInt.default(1000).meta({ description: 'poll interval, the safety net for a lost NOTIFY' }),
  /**
   * After a batch that was not full, wait this long before the next claim, so that the events
   * committed meanwhile share one batch: at low rates fewer round trips, publishes and confirms per
   * event (the machine's CPU), for up to that much more latency per event (like Kafka's
   * `linger.ms`). 0 claims at once. Without ordering only (ordering mode ignores it). Default: 0.
   */
  lingerMs: z
    .number()
    .int()
    .min(0)
    .max(1000)
    .default(0)
    .meta({ description: 'after a batch that was not full, wait this long before the next claim, so low-rate events share a batch (0: at once)' }),
  /** How long a batch waits for publisher confirms before its unconfirmed rows are retried, in ms. Default: 10000. */
  publishTimeoutMs: positiveInt.default(10_000).meta({ description: 'wait for publisher confirms before retrying' }),
  /** First retry delay of a row in ms; doubles per attempt, with jitter. Default: 500. */
  retryInitialDelayMs: positiveInt.default(500).meta({ description: 'first retry delay of a failed row (doubles per attempt)' }),
  /** Longest retry delay of a row in ms. Default: 60000. */
  retryMaxDelayMs: positiveInt.default(60_000).meta({ description: 'longest retry delay of a failed row' }),
  /** Attempts after which a row the broker keeps returning as unroutable becomes a dead letter. Default: 10. */
  maxUnroutableAttempts: positiveInt.default(10).meta({ description: 'attempts before an unroutable row becomes a dead letter' }),
  /** Largest payload in bytes; a larger row becomes a dead letter at once. Default: 4194304 (4 MiB). */
  maxMessageBytes: positiveInt.default(4 * 1024 * 1024).meta({ description: 'largest payload; larger rows become dead letters' }),
  /** Publish each key's events in outbox order, across relay instances. Default: false. */
  ordering: z.boolean().default(false).meta({ description: "publish each key's events in outbox order (true/false)" }),
  /** Partitions of the key space leased among relays in ordering mode; the same on every instance. Default: 64. */
  partitions: positiveInt.max(4096).default(64).meta({ description: 'key-space partitions leased among relays in ordering mode' }),
  /** How often a relay in ordering mode renews and rebalances its leases, in ms. Default: 1000. */
  leaseHeartbeatMs: positiveInt.default(1000).meta({ description: 'lease renewal and rebalancing interval in ordering mode' }),
  /** Declare a missing exchange as a durable topic exchange instead of failing the row. Default: true. */
  declareExchanges: z.boolean().default(true).meta({ description: 'declare missing exchanges as durable topic exchanges' }),
  /**
   * Keep every published row in `outbox_archive` (written in the transaction that deletes it from
   * the outbox), for `mailroom history replay`/`list`/`show`. Needs INSERT on the table. Default: false.
   */
  archive: z.boolean().default(false).meta({ description: 'keep published rows in outbox_archive for history replay (true/false)' }),
  /** How long `stop()` waits for the batch in flight, in ms. Default: 30000. */
  shutdownTimeoutMs: positiveInt.default(30_000).meta({ description: 'how long SIGTERM waits for the batch in flight' }),
  /** Instance name, in logs and as the connection names. Default: `mailroom-relay-<pid>`. */
  name: z
    .string()
    .min(1)
    .default(() => `mailroom-relay-${process.pid}`)
    .meta({ env: 'MAILROOM_RELAY_NAME', description: 'instance name in logs and connection names', defaultText: 'mailroom-relay-<pid>' }),
  /** Where the relay logs. Default: silent. */
  logger: z.custom<Logger>((v) => isObject(v) && 'warn' in v, 'expected a Logger').optional(),
  /** Registry the relay's metrics are added to. Default: a new one (`relay.metrics`). */
  metrics: z.custom<MetricsRegistry>((v) => isObject(v) && 'render' in v, 'expected a MetricsRegistry').optional(),
});

/** Options of {@link createRelay}. Every field but `database` and `amqp` has a default. */
export type RelayOptions = z.input<typeof relayOptionsSchema>;

/** Relay options with every default filled in. */
export type ResolvedRelayOptions = z.output<typeof relayOptionsSchema>;

/** Validates relay options, naming every unknown key and every bad value. */
export function resolveRelayOptions(options: RelayOptions): ResolvedRelayOptions {
  // Producers and consumers take kysely, so passing the same `db` here is the natural first guess;
  // the generic "expected a pg Pool" would not say which object to pass instead.
  const database: unknown = isObject(options) ? options.database : undefined;
  if (isKysely(database)) {
    const problem =
      '"database": got a kysely instance, but the relay needs the pg Pool itself (it LISTENs for new rows and holds ' +
      'its leases on its own connections): pass the Pool your kysely PostgresDialect was made with ' +
      '(`new PostgresDialect({ pool })` → `createRelay({ database: pool, … })`), or a PostgreSQL URL';
    throw new MailroomError('INVALID_CONFIG', `Invalid relay options: ${problem}`, { details: { issues: [problem] } });
  }
  const resolved = parseConfig(relayOptionsSchema, options, 'relay options');
  validateIdentifier(resolved.schema);
  return resolved;
}
