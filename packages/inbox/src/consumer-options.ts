import { z } from 'zod/v4';
import { DEFAULT_DEAD_LETTERS, DEFAULT_SCHEMA, MailroomError, type AmqpConnection, type Logger, type MetricsRegistry, type Queryable } from '@mailroom/core';
import { isKysely, isPgPool, parseConfig, validateIdentifier } from '@mailroom/core/internal';
import type { HandlerBinding } from './handler.js';
import { checkBrokerNames } from './broker-names.js';
import { delayQueuesOf } from './consumer-topology.js';
import { checkRetentionWindow, inboxRetentionSchema } from './inbox-retention.js';
import { partitionOptionsSchema, type PartitionOptions } from './partition-options.js';
import { partitionExchangeName, partitionQueueName } from './partition-topology.js';
import { retryPolicySchema } from './retry-policy.js';

// The name is inlined into the BEGIN + inbox insert round trip (see handler-transaction.ts): this
// pattern is what makes that safe, besides keeping queue and metric labels readable.
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/**
 * What the consumer needs of a dead-letter sink: something it can start and stop. A sink from
 * `createDeadLetterSink` in `@mailroom/dlq` fits; typed structurally so the inbox does not
 * depend on the dead-letter store.
 */
export interface DeadLetterSinkLike {
  /** Starts draining the dead-letter queue; resolves once it consumes. */
  start(): Promise<void>;
  /** Stops draining; always resolves. */
  stop(): Promise<void>;
}

const isSink = (v: unknown): v is DeadLetterSinkLike => isObject(v) && typeof v.start === 'function' && typeof v.stop === 'function';

const SINK_BOOLEAN =
  'the consumer no longer drains dead letters itself: pass a sink, e.g. `sink: createDeadLetterSink({ db, amqp, topology: { exchange, queue } })` from @mailroom/dlq, or leave "sink" out (dead letters then wait in the dead-letter queue until a sink drains them)';

/** A binding of the work queue to an exchange. */
export const queueBindingSchema = z.strictObject({
  /** A durable topic exchange (declared if missing). */
  exchange: z.string().min(1).meta({ description: 'a durable topic exchange (declared if missing)' }),
  /** The binding pattern (`order.*`, `#`). */
  routingKey: z.string().meta({ description: 'the binding pattern (order.*, #)' }),
});

/** A binding of the work queue to an exchange. */
export type QueueBinding = z.output<typeof queueBindingSchema>;

/** Where the consumer's dead letters go, and what drains them into the store. */
export const deadLetterOptionsSchema = z.strictObject({
  /** The durable topic exchange dead letters are published to. Default: `mailroom.dead-letters`. */
  exchange: z.string().min(1).default(DEFAULT_DEAD_LETTERS).meta({ description: 'the dead-letter exchange' }),
  /** The durable queue bound to it, where dead letters wait for a sink. Default: `mailroom.dead-letters`. */
  queue: z.string().min(1).default(DEFAULT_DEAD_LETTERS).meta({ description: 'the dead-letter queue, drained by a sink' }),
  /**
   * A sink the consumer starts before it subscribes and stops in `stop()` (for instance
   * `createDeadLetterSink(...)` from `@mailroom/dlq`). Default: none: dead letters wait in the
   * durable dead-letter queue until a sink (here, in another process, or `mailroom dlq`) drains them.
   */
  sink: z
    .custom<DeadLetterSinkLike>(isSink, { error: (issue) => (typeof issue.input === 'boolean' ? SINK_BOOLEAN : 'expected a dead-letter sink (an object with start() and stop())') })
    .optional()
    .meta({ description: 'a dead-letter sink the consumer starts and stops', defaultText: 'none: dead letters wait in the queue' }),
});

/**
 * The consumer's options: the single source of each option's type, default and description
 * (`handlers` is typed with the caller's transaction type in {@link ConsumerOptions}).
 */
export const consumerOptionsSchema = z.strictObject({
  /** The consumer's name: the inbox key with the message id. Keep it stable across deploys. */
  name: z
    .string()
    .regex(NAME, 'use letters, digits and . _ : - (at most 200 characters)')
    .meta({ description: "the consumer's name: the inbox key with the message id (keep it stable)" }),
  /** A pg Pool or a kysely instance; each delivery takes one connection for its transaction. */
  db: z
    .custom<Queryable>(
      (v) => (isKysely(v) && !v.isTransaction) || isPgPool(v),
      'expected a pg Pool or a kysely instance (a single pg Client cannot run concurrent transactions)',
    )
    .meta({ description: 'a pg Pool or a kysely instance' }),
  /** A RabbitMQ URL (the consumer opens and closes its own connection) or a shared connection. */
  amqp: z
    .union([z.string().min(1), z.custom<AmqpConnection>((v) => isObject(v) && typeof v.get === 'function', 'expected a URL or an AmqpConnection')])
    .meta({ description: 'a RabbitMQ URL or a shared AmqpConnection' }),
  /** Handlers by message type, made with `handler(contract, fn)`. */
  handlers: z
    .array(z.custom<HandlerBinding<unknown>>((v) => isObject(v) && isObject(v.contract) && typeof v.handle === 'function', 'expected handler(contract, fn)'))
    .min(1, 'give at least one handler(contract, fn)')
    .meta({ description: 'handlers by message type, made with handler(contract, fn)' }),
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema: z.string().default(DEFAULT_SCHEMA).meta({ description: "schema of mailroom's tables" }),
  /**
   * The work queue. At most 255 bytes with its delay queues' suffix (`.retry.<ms>ms`), no
   * control characters, not `amq.*`. Default: the consumer's name.
   */
  queue: z.string().min(1).optional().meta({ description: 'the work queue', defaultText: "the consumer's name" }),
  /**
   * `classic` or `quorum` (replicated; choose it on a cluster). Changing it for an existing
   * queue needs a new queue name. Default: `classic`.
   */
  queueType: z.enum(['classic', 'quorum']).default('classic').meta({ description: 'classic or quorum (replicated; choose it on a cluster)' }),
  /** What the work queue is bound to. Default: each handler's contract exchange and routing key. */
  bindings: z
    .array(queueBindingSchema)
    .optional()
    .meta({ description: 'what the work queue is bound to', defaultText: "each handler's contract exchange and routing key" }),
  /** Deliveries handled at once (AMQP prefetch); size the pg pool to match. Default: 20. */
  prefetch: z.number().int().min(1).max(65535).default(20).meta({ description: 'deliveries handled at once (AMQP prefetch)' }),
  /**
   * Group commit: at most this many deliveries share one transaction, each in a savepoint of its
   * own (a handler that fails undoes only itself). Deliveries join the next transaction while
   * the previous ones are busy; a lone delivery never waits for company. 1 turns group commit
   * off (one transaction per delivery). At most 64: PostgreSQL keeps up to 64 subtransactions
   * of a transaction in shared memory, more slow down every snapshot on the server. Default: 32.
   */
  maxBatchSize: z
    .number()
    .int()
    .min(1)
    .max(64)
    .default(32)
    .meta({ description: 'deliveries that may share one transaction (group commit), each in its own savepoint; 1 = off' }),
  /** Retries of transient failures. Default: 5 attempts, 1 s doubling up to 5 min. */
  retry: retryPolicySchema.prefault({}).meta({ description: 'retries of transient failures' }),
  /**
   * Handle messages of one key (the event's ordering key) one at a time, in delivery order; a
   * failing message is retried in place while its key waits. Default: false (true with `partitions`).
   */
  ordering: z.boolean().default(false).meta({ description: 'handle messages of one key one at a time, in delivery order' }),
  /**
   * Partitioned consumption across processes: `{ count }` partition queues fed by RabbitMQ's
   * consistent-hash exchange on the ordering key, shared by the processes of this consumer
   * through leases in PostgreSQL. Implies `ordering`. Default: none (one work queue).
   */
  partitions: partitionOptionsSchema.optional().meta({ description: 'partition queues shared across processes (implies ordering)', defaultText: 'none: one work queue' }),
  /** Bodies larger than this go to the dead letters unread. Default: 1048576 (1 MiB). */
  maxBodyBytes: z.number().int().positive().default(1_048_576).meta({ description: 'larger bodies go to the dead letters unread' }),
  /**
   * JSON nested deeper than this (objects and arrays) goes to the dead letters as
   * `invalid-payload`, checked in one pass over the bytes before parsing. Default: 64.
   */
  maxJsonDepth: z.number().int().min(1).max(100_000).default(64).meta({ description: 'deeper JSON goes to the dead letters unparsed' }),
  /** The dead-letter exchange and queue, and an optional sink that drains the queue into the store. Default: `mailroom.dead-letters`, no sink. */
  deadLetters: deadLetterOptionsSchema.prefault({}).meta({ description: 'dead-letter exchange, queue and sink' }),
  /** Inbox retention. Default: 7 days, cleaned hourly. */
  retention: inboxRetentionSchema.prefault({}).meta({ description: 'inbox retention' }),
  /** How long `stop()` waits for handlers in flight before aborting their signals, in ms. Default: 10000. */
  stopTimeoutMs: z.number().min(0).default(10_000).meta({ description: 'how long stop() waits for handlers in flight' }),
  /** Where counters and the handler latency histogram go. Default: a private registry. */
  metrics: z.custom<MetricsRegistry>((v) => isObject(v) && typeof v.counter === 'function', 'expected a MetricsRegistry').optional(),
  /** Where problems are logged. Default: silent. */
  logger: z.custom<Logger>((v) => isObject(v) && typeof v.warn === 'function', 'expected a Logger').optional(),
});

/** Options of `createConsumer`. Every field but `name`, `db`, `amqp` and `handlers` has a default. */
export type ConsumerOptions<TTx = Queryable> = Omit<z.input<typeof consumerOptionsSchema>, 'handlers'> & {
  /** Handlers by message type, made with `handler(contract, fn)`. */
  handlers: ReadonlyArray<HandlerBinding<TTx>>;
};

/** Consumer options with every default filled in, and the handlers by message type. */
export type ResolvedConsumerOptions<TTx = Queryable> = Omit<z.output<typeof consumerOptionsSchema>, 'handlers' | 'queue' | 'bindings' | 'partitions'> & {
  /** Partitioned consumption, with the pool of the lease session resolved; undefined for one work queue. */
  partitions: (PartitionOptions & { pool: NonNullable<PartitionOptions['pool']> }) | undefined;
  /** The work queue. */
  queue: string;
  /** What the work queue is bound to. */
  bindings: QueueBinding[];
  /** The handler of each message type. */
  handlers: ReadonlyMap<string, HandlerBinding<TTx>>;
};

/**
 * Validates consumer options, naming every unknown key and bad value, and fills in the defaults
 * that depend on other options (the queue, the bindings).
 */
export function resolveConsumerOptions<TTx>(input: ConsumerOptions<TTx>): ResolvedConsumerOptions<TTx> {
  const options = parseConfig(consumerOptionsSchema, input, 'consumer options');
  validateIdentifier(options.schema);
  if (input.partitions !== undefined && input.ordering === false) {
    throw new MailroomError('INVALID_CONFIG', 'Invalid consumer options: "partitions" keeps each key in order across processes and needs "ordering"; leave "ordering" out or set it to true.');
  }
  const handlers = new Map<string, HandlerBinding<TTx>>();
  for (const binding of input.handlers) {
    if (handlers.has(binding.contract.type)) {
      throw new MailroomError('INVALID_CONFIG', `Invalid consumer options: two handlers for message type "${binding.contract.type}"; give each type one handler.`);
    }
    handlers.set(binding.contract.type, binding);
  }
  const defaults = new Map<string, QueueBinding>();
  for (const b of input.handlers) defaults.set(`${b.contract.exchange}\u0000${b.contract.routingKey}`, { exchange: b.contract.exchange, routingKey: b.contract.routingKey });
  checkRetentionWindow(options.retention.windowMs, options.retry);
  const queue = options.queue ?? options.name;
  const bindings = options.bindings ?? [...defaults.values()];
  const partitions = resolvePartitions(options);
  checkBrokerNames({
    queue: { option: options.queue === undefined ? 'name' : 'queue', value: queue },
    // The longest derived name is checked against AMQP's limit with the delay queues'.
    delayQueues: [
      ...delayQueuesOf(queue, options.retry).values(),
      ...(partitions ? [partitionQueueName(queue, partitions.count - 1), partitionExchangeName(queue)] : []),
    ],
    bindings,
    bindingsFromContracts: options.bindings === undefined,
    deadLetters: options.deadLetters,
  });
  return { ...options, ordering: options.ordering || partitions !== undefined, queue, bindings, handlers, partitions };
}

/** Partitions imply ordering (refused with `ordering: false`) and need a pg Pool for their lease session. */
function resolvePartitions(options: z.output<typeof consumerOptionsSchema>): ResolvedConsumerOptions['partitions'] {
  const p = options.partitions;
  if (p === undefined) return undefined;
  const refuse = (why: string): never => {
    throw new MailroomError('INVALID_CONFIG', `Invalid consumer options: "partitions": ${why}`);
  };
  const pool = p.pool ?? (isPgPool(options.db) ? options.db : undefined);
  if (pool === undefined) return refuse('the partition leases need a pg Pool of their own connection: pass "partitions.pool" (the Pool your kysely dialect was made with)');
  return { ...p, pool };
}
