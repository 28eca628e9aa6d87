import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { z } from 'zod';
import {
  AmqpSubscription,
  DEFAULT_SCHEMA,
  MailroomError,
  SpanKind,
  WIRE_HEADERS,
  crashPoint,
  resolveAmqpConnection,
  describeError,
  extractTraceContext,
  isKysely,
  isMailroomError,
  isPgPool,
  isUuid,
  parseConfig,
  quoteIdentifier,
  silentLogger,
  toExecutor,
  validateIdentifier,
  withSpan,
  type AmqpConnection,
  type Executor,
  type Logger,
  type MetricsRegistry,
  type Queryable,
} from '@mailroom/core';
import {
  DEAD_LETTER_HEADERS,
  createDeadLetterSink,
  declareDeadLetterTopology,
  deriveMessageId,
  resolveDeadLetterTopology,
  type DeadLetterReason,
  type DeadLetterSink,
} from '@mailroom/dlq';
import type { HandlerBinding, MessageMetadata } from './handler.js';
import { DEFAULT_RETENTION_MS, checkRetentionWindow, cleanupInbox, type InboxRetention } from './inbox-retention.js';
import { isNonRetryableError } from './non-retryable-error.js';
import { consumerMetrics, type ConsumerMetrics } from './consumer-metrics.js';
import { resolveRetryPolicy, retryDelayMs, retryDelays, retryHorizonMs, type RetryPolicy } from './retry-policy.js';

/** A binding of the work queue to an exchange. */
export interface QueueBinding {
  /** A durable topic exchange (declared if missing). */
  exchange: string;
  /** The binding pattern (`order.*`, `#`). */
  routingKey: string;
}

/** Options of {@link createConsumer}. */
export interface ConsumerOptions<TTx = Queryable> {
  /** The consumer's name: the inbox key with the message id. Keep it stable across deploys. */
  name: string;
  /** A pg Pool or a kysely instance; each delivery takes one connection for its transaction. */
  db: Queryable;
  /** A RabbitMQ URL (the consumer opens and closes its own connection) or a shared connection. */
  amqp: string | AmqpConnection;
  /** Handlers by message type, made with `handler(contract, fn)`. */
  handlers: ReadonlyArray<HandlerBinding<TTx>>;
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** The work queue. Default: the consumer's name. */
  queue?: string;
  /**
   * `classic` or `quorum` (replicated; choose it on a cluster). Changing it for an existing
   * queue needs a new queue name. Default: `classic`.
   */
  queueType?: 'classic' | 'quorum';
  /** What the work queue is bound to. Default: each handler's contract exchange and routing key. */
  bindings?: QueueBinding[];
  /** Deliveries handled at once (AMQP prefetch); size the pg pool to match. Default: 20. */
  prefetch?: number;
  /** Retries of transient failures. Default: 5 attempts, 1 s doubling up to 5 min. */
  retry?: RetryPolicy;
  /** Handle messages of one key (`x-mailroom-key`) one at a time, in delivery order. Default: false. */
  ordering?: boolean;
  /** Bodies larger than this go to the dead letters unread. Default: 1048576 (1 MiB). */
  maxBodyBytes?: number;
  /** The dead-letter exchange and queue, and whether this consumer also drains it into the store. Default: `mailroom.dead-letters`, sink on. */
  deadLetters?: { exchange?: string; queue?: string; sink?: boolean };
  /** Inbox retention. Default: 7 days, cleaned hourly. */
  retention?: InboxRetention;
  /** How long `stop()` waits for handlers in flight before aborting their signals. Default: 10000. */
  stopTimeoutMs?: number;
  /** Where counters and the handler latency histogram go. Default: a private registry. */
  metrics?: MetricsRegistry;
  /** Where problems are logged. Default: silent. */
  logger?: Logger;
}

/** Counts of what a consumer did since it started (the same numbers as its metrics). */
export interface ConsumerStats {
  /** Deliveries whose handler committed. */
  handled: number;
  /** Deliveries found in the inbox already: acked, nothing committed. */
  duplicates: number;
  /** Handler failures (each retried or dead-lettered). */
  failures: number;
  /** Deliveries sent to a delay queue for another attempt. */
  retries: number;
  /** Deliveries sent to the dead letters. */
  deadLettered: number;
  /** Deliveries given back to the queue because the database or broker failed (no attempt used). */
  requeued: number;
}

/** Events of a {@link Consumer}. Nothing throws if nobody listens. */
export interface ConsumerEvents {
  /** Subscribed (again, after a reconnect). */
  subscribed: [];
  /** A handler committed. */
  handled: [message: MessageMetadata, durationMs: number];
  /** A duplicate delivery was acked without running the handler. */
  duplicate: [message: MessageMetadata];
  /** A failed delivery will be attempted again after `delayMs`. */
  retrying: [info: { message: MessageMetadata; error: string; delayMs: number }];
  /** A delivery went to the dead letters. */
  deadLettered: [info: { messageId: string; reason: DeadLetterReason; error: string; attempt: number }];
  /** A delivery went back to the queue because of an infrastructure error. */
  requeued: [info: { messageId: string; error: string }];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

const optionsSchema = z.strictObject({
  name: z.string().regex(NAME, 'use letters, digits and . _ : - (at most 200 characters)'),
  db: z.custom<Queryable>(
    (v) => (isKysely(v) && !v.isTransaction) || isPgPool(v),
    'expected a pg Pool or a kysely instance (a single pg Client cannot run concurrent transactions)',
  ),
  amqp: z.union([z.string().min(1), z.custom<AmqpConnection>((v) => isObject(v) && typeof v.get === 'function', 'expected a URL or an AmqpConnection')]),
  handlers: z
    .array(z.custom<HandlerBinding<unknown>>((v) => isObject(v) && isObject(v.contract) && typeof v.handle === 'function', 'expected handler(contract, fn)'))
    .min(1, 'give at least one handler(contract, fn)'),
  schema: z.string().optional(),
  queue: z.string().min(1).max(200).optional(),
  queueType: z.enum(['classic', 'quorum']).optional(),
  bindings: z.array(z.strictObject({ exchange: z.string().min(1), routingKey: z.string() })).optional(),
  prefetch: z.number().int().min(1).max(65535).optional(),
  retry: z
    .strictObject({
      maxAttempts: z.number().int().min(1).max(100).optional(),
      initialDelayMs: z.number().int().min(1).optional(),
      multiplier: z.number().min(1).optional(),
      maxDelayMs: z.number().int().min(1).optional(),
    })
    .optional(),
  ordering: z.boolean().optional(),
  maxBodyBytes: z.number().int().positive().optional(),
  deadLetters: z.strictObject({ exchange: z.string().min(1).optional(), queue: z.string().min(1).optional(), sink: z.boolean().optional() }).optional(),
  retention: z
    .strictObject({ windowMs: z.number().positive().optional(), cleanupIntervalMs: z.number().min(0).optional(), batchSize: z.number().int().positive().optional() })
    .optional(),
  stopTimeoutMs: z.number().min(0).optional(),
  metrics: z.custom<MetricsRegistry>((v) => isObject(v) && typeof v.counter === 'function', 'expected a MetricsRegistry').optional(),
  logger: z.custom<Logger>((v) => isObject(v) && typeof v.warn === 'function', 'expected a Logger').optional(),
});

/** A handler failure (as opposed to a failure of mailroom's own database or broker work). */
class HandlerFailure extends Error {
  constructor(
    readonly original: unknown,
    readonly reason: 'invalid-payload' | 'non-retryable' | 'transient' | 'aborted',
  ) {
    super(describeError(original));
  }
}

type Outcome = 'handled' | 'duplicate';

const utf8 = new TextDecoder('utf-8', { fatal: true });

const ABORTED_TRANSACTION = new Error(
  'The handler transaction was aborted by an earlier error (caught inside the handler?), so nothing was committed.',
);

function isHandlerSqlState(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^(23|40)[0-9A-Z]{3}$/.test(code);
}

function sqlLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

function headerText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return null;
}

// Headers the broker adds on dead-lettering grow with every retry; they are never read anyway.
function withoutBrokerHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'x-death' || lower.startsWith('x-first-death-') || lower.startsWith('x-last-death-')) continue;
    out[name] = value;
  }
  return out;
}

function republishOptions(message: ConsumeMessage, headers: Record<string, unknown>, messageId: unknown): Options.Publish {
  const p = message.properties;
  const options: Options.Publish = { persistent: true, headers };
  // userId is left out: the broker refuses a publish whose user-id is not the connection's user.
  if (typeof messageId === 'string') options.messageId = messageId;
  if (typeof p.type === 'string') options.type = p.type;
  if (typeof p.contentType === 'string') options.contentType = p.contentType;
  if (typeof p.contentEncoding === 'string') options.contentEncoding = p.contentEncoding;
  if (typeof p.correlationId === 'string') options.correlationId = p.correlationId;
  if (typeof p.replyTo === 'string') options.replyTo = p.replyTo;
  if (typeof p.appId === 'string') options.appId = p.appId;
  if (typeof p.timestamp === 'number') options.timestamp = p.timestamp;
  if (typeof p.priority === 'number') options.priority = p.priority;
  return options;
}

const PUBLISH_ID = DEAD_LETTER_HEADERS.publishId;

// Publish ids the broker returned as unroutable, per channel (filled by its 'return' listener).
const returnedOn = new WeakMap<ConfirmChannel, Set<string>>();

/** A retry or dead-letter copy the broker confirmed but returned: its queue is missing. */
class UnroutableError extends MailroomError {}

// Confirmed and mandatory: a copy counts as kept only when the broker confirmed it and did not
// return it as unroutable (a delay queue or the dead-letter binding was deleted under us).
function publishConfirmed(channel: ConfirmChannel, exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
  const publishId = randomUUID();
  const returned = returnedOn.get(channel);
  const target = `${exchange || 'the default exchange'} / ${routingKey}`;
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new MailroomError('PUBLISH_FAILED', `No publisher confirm from RabbitMQ within 10 s (${target}).`)), 10_000);
    try {
      channel.publish(exchange, routingKey, content, { ...options, mandatory: true, headers: { ...(options.headers as Record<string, unknown> | undefined), [PUBLISH_ID]: publishId } }, (error: unknown) => {
        clearTimeout(timer);
        // RabbitMQ sends basic.return before the ack of the same publish, so it is known here.
        if (error) reject(new MailroomError('PUBLISH_FAILED', `RabbitMQ did not confirm a publish to ${target}.`, { cause: error }));
        else if (returned?.delete(publishId) === true) reject(new UnroutableError('PUBLISH_FAILED', `RabbitMQ returned a publish to ${target} as unroutable.`));
        else resolve();
      });
    } catch (error) {
      clearTimeout(timer);
      reject(error instanceof Error ? error : new Error(String(error)));
    }
  });
}

/**
 * An idempotent consumer. Each delivery runs in one database transaction that holds the inbox
 * row (consumer, message id), the payload validation and the handler; the delivery is acked only
 * after the commit. A duplicate commits nothing and is acked. Transient failures come back
 * through delay queues; what cannot be handled goes to the dead letters.
 */
export class Consumer<TTx = Queryable> extends EventEmitter<ConsumerEvents> {
  /** The consumer's name. */
  readonly name: string;
  /** The work queue. */
  readonly queue: string;
  readonly #db: Queryable;
  readonly #schema: string;
  readonly #handlers = new Map<string, HandlerBinding<TTx>>();
  readonly #bindings: QueueBinding[];
  readonly #queueType: 'classic' | 'quorum';
  readonly #prefetch: number;
  readonly #retry: Required<RetryPolicy>;
  readonly #ordering: boolean;
  readonly #maxBodyBytes: number;
  readonly #deadLetters: { exchange: string; queue: string };
  readonly #sinkEnabled: boolean;
  readonly #retentionMs: number;
  readonly #cleanupIntervalMs: number;
  readonly #cleanupBatch: number;
  readonly #stopTimeoutMs: number;
  readonly #logger: Logger;
  readonly #metrics: ConsumerMetrics;
  readonly #connection: AmqpConnection;
  readonly #ownsConnection: boolean;
  readonly #inboxTable: string;
  readonly #stats: ConsumerStats = { handled: 0, duplicates: 0, failures: 0, retries: 0, deadLettered: 0, requeued: 0 };
  readonly #subscription: AmqpSubscription<ConfirmChannel>;
  #consumerTag: string | undefined;
  #started = false;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #sink: DeadLetterSink | undefined;
  #cleanupTimer: NodeJS.Timeout | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #aborts = new Set<AbortController>();
  readonly #keyChains = new Map<string, Promise<void>>();
  // Channels that closed: their unacked deliveries come back from the broker, in queue order.
  readonly #closedChannels = new WeakSet<ConfirmChannel>();

  /** Use {@link createConsumer}. */
  constructor(input: ConsumerOptions<TTx>) {
    super();
    const options = parseConfig(optionsSchema, input, 'consumer options');
    this.name = options.name;
    this.queue = options.queue ?? options.name;
    this.#db = options.db;
    this.#schema = validateIdentifier(options.schema ?? DEFAULT_SCHEMA);
    this.#inboxTable = `${quoteIdentifier(this.#schema)}.inbox`;
    for (const binding of input.handlers) {
      if (this.#handlers.has(binding.contract.type)) {
        throw new MailroomError('INVALID_CONFIG', `Invalid consumer options: two handlers for message type "${binding.contract.type}"; give each type one handler.`);
      }
      this.#handlers.set(binding.contract.type, binding);
    }
    const defaults = new Map<string, QueueBinding>();
    for (const b of input.handlers) defaults.set(`${b.contract.exchange}\u0000${b.contract.routingKey}`, { exchange: b.contract.exchange, routingKey: b.contract.routingKey });
    this.#bindings = options.bindings ?? [...defaults.values()];
    this.#queueType = options.queueType ?? 'classic';
    this.#prefetch = options.prefetch ?? 20;
    this.#retry = resolveRetryPolicy(options.retry);
    this.#ordering = options.ordering ?? false;
    this.#maxBodyBytes = options.maxBodyBytes ?? 1_048_576;
    this.#deadLetters = resolveDeadLetterTopology(options.deadLetters);
    this.#sinkEnabled = options.deadLetters?.sink ?? true;
    this.#retentionMs = options.retention?.windowMs ?? DEFAULT_RETENTION_MS;
    checkRetentionWindow(this.#retentionMs, this.#retry);
    this.#cleanupIntervalMs = options.retention?.cleanupIntervalMs ?? 3_600_000;
    this.#cleanupBatch = options.retention?.batchSize ?? 5000;
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 10_000;
    this.#logger = options.logger ?? silentLogger;
    this.#metrics = consumerMetrics(options.metrics);
    ({ connection: this.#connection, owned: this.#ownsConnection } = resolveAmqpConnection(options.amqp, {
      name: `mailroom-consumer-${this.name}`,
      logger: this.#logger,
    }));
    this.#subscription = new AmqpSubscription<ConfirmChannel>({
      connection: this.#connection,
      label: `consumer ${this.name}`,
      logger: this.#logger,
      open: (connection) => connection.createConfirmChannel(),
      setup: async (ch) => {
        const returned = new Set<string>();
        returnedOn.set(ch, returned);
        ch.once('close', () => this.#closedChannels.add(ch));
        ch.on('return', (m: { properties: { headers?: Record<string, unknown> } }) => {
          const id = m.properties.headers?.[PUBLISH_ID];
          if (typeof id === 'string') returned.add(id);
        });
        await this.#declare(ch);
        await ch.prefetch(this.#prefetch);
        const reply = await ch.consume(this.queue, (message) => {
          if (message === null) {
            // Cancelled by the broker (queue deleted or failed over): start over.
            ch.close().catch(() => undefined);
            return;
          }
          this.#dispatch(ch, message);
        });
        this.#consumerTag = reply.consumerTag;
      },
      // 406 PRECONDITION_FAILED: a queue exists with other arguments (classic vs quorum, say).
      // Retrying cannot fix that, so start() says so instead of hanging.
      fatal: (error) =>
        (error as { code?: unknown }).code === 406
          ? new MailroomError(
              'INVALID_CONFIG',
              `Consumer "${this.name}": RabbitMQ refused the topology: ${describeError(error)}. An existing queue has other arguments (queueType?); delete it or use another queue name.`,
              { cause: error },
            )
          : undefined,
      onSubscribed: () => this.#notify('subscribed'),
      onClosed: () => {
        this.#consumerTag = undefined;
      },
    });
  }

  // A listener that throws must not turn into a nack of a delivery that was already acked (the
  // broker closes the channel for that): listener errors are logged and dropped.
  #notify<K extends keyof ConsumerEvents>(event: K, ...args: ConsumerEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: ConsumerEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      this.#logger.error(`consumer ${this.name}: a '${event}' listener threw`, { error: describeError(error) });
    }
  }

  /** What this consumer did since it started. */
  get stats(): Readonly<ConsumerStats> {
    return { ...this.#stats };
  }

  /** The delay queue names, one per distinct retry delay. */
  get delayQueues(): string[] {
    return [...new Set(retryDelays(this.#retry))].map((ms) => this.#delayQueue(ms));
  }

  /**
   * Registers the consumer in the database, declares the topology and starts consuming (and,
   * unless turned off, draining dead letters into the store). Resolves once subscribed.
   */
  async start(): Promise<void> {
    if (this.#started) throw new MailroomError('INVALID_CONFIG', `Consumer "${this.name}" is already started; create a new one to start again.`);
    this.#started = true;
    await this.#register();
    if (this.#sinkEnabled) {
      this.#sink = createDeadLetterSink({ db: this.#db, schema: this.#schema, amqp: this.#connection, topology: this.#deadLetters, logger: this.#logger });
      await this.#sink.start();
    }
    await this.#subscription.start();
    if (this.#cleanupIntervalMs > 0) {
      this.#cleanupTimer = setInterval(() => {
        this.cleanup().catch((error: unknown) => this.#logger.warn('inbox cleanup failed', { error: describeError(error) }));
      }, this.#cleanupIntervalMs);
      this.#cleanupTimer.unref();
    }
  }

  /** Deletes this consumer's inbox rows past the retention window; returns how many. */
  async cleanup(): Promise<number> {
    return cleanupInbox(this.#db, { consumer: this.name, windowMs: this.#retentionMs, retry: this.#retry, schema: this.#schema, batchSize: this.#cleanupBatch });
  }

  /**
   * Stops consuming and waits for the handlers in flight, up to `stopTimeoutMs`; then aborts
   * their signals and closes. Unacked deliveries go back to the queue. Always resolves.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop().catch((error: unknown) => this.#logger.warn('consumer stop failed', { error: describeError(error) }));
    return this.#stopped;
  }

  /** Same as {@link stop}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    // No new subscription from here on (one in progress gets a bounded wait below).
    const halting = this.#subscription.halt();
    if (this.#cleanupTimer) clearInterval(this.#cleanupTimer);
    const channel = this.#subscription.channel;
    if (channel && this.#consumerTag !== undefined) {
      await Promise.race([channel.cancel(this.#consumerTag).catch(() => undefined), sleep(2000, undefined, { ref: false })]);
    }
    const all = Promise.allSettled([...this.#inFlight, ...this.#keyChains.values()]);
    const timedOut = await Promise.race([all.then(() => false), sleep(this.#stopTimeoutMs, true, { ref: false })]);
    if (timedOut) {
      this.#logger.warn(`consumer ${this.name}: ${this.#inFlight.size} handler(s) still running after ${this.#stopTimeoutMs} ms; aborting them`);
      for (const controller of this.#aborts) controller.abort(new MailroomError('STOPPED', 'The consumer is stopping.'));
      await Promise.race([all, sleep(1000, undefined, { ref: false })]);
    }
    // A resubscription waiting for a broker that is down gets a bounded wait, alongside the sink.
    await Promise.all([
      this.#sink ? Promise.race([this.#sink.stop(), sleep(this.#stopTimeoutMs, undefined, { ref: false })]) : undefined,
      halting,
    ]);
    // The channel may have been replaced by a resubscription while stopping: close both.
    if (channel && channel !== this.#subscription.channel) await Promise.race([channel.close().catch(() => undefined), sleep(2000, undefined, { ref: false })]);
    await this.#subscription.close();
    if (this.#ownsConnection) await Promise.race([this.#connection.close(), sleep(2000, undefined, { ref: false })]);
  }

  async #register(): Promise<void> {
    const q = quoteIdentifier(this.#schema);
    const db = toExecutor(this.#db);
    const present = await db.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [`${q}.inbox_consumers`]);
    if (present.rows[0]?.present !== true) {
      throw new MailroomError('INVALID_CONFIG', `Schema "${this.#schema}" has no inbox tables: run \`mailroom migrate\` (or migrate() from @mailroom/core) first.`);
    }
    await db.query(
      `INSERT INTO ${q}.inbox_consumers (consumer, queue, retention_ms, retry_horizon_ms) VALUES ($1, $2, $3, $4)
       ON CONFLICT (consumer) DO UPDATE SET queue = excluded.queue, retention_ms = excluded.retention_ms,
         retry_horizon_ms = excluded.retry_horizon_ms, updated_at = now()`,
      [this.name, this.queue, Math.floor(this.#retentionMs), retryHorizonMs(this.#retry)],
    );
  }

  #delayQueue(ms: number): string {
    return `${this.queue}.retry.${ms}ms`;
  }

  async #declare(channel: ConfirmChannel): Promise<void> {
    await declareDeadLetterTopology(channel, this.#deadLetters);
    await channel.assertQueue(this.queue, { durable: true, arguments: { 'x-queue-type': this.#queueType } });
    for (const b of this.#bindings) {
      await channel.assertExchange(b.exchange, 'topic', { durable: true });
      await channel.bindQueue(this.queue, b.exchange, b.routingKey);
    }
    // Delay queues: a per-queue TTL, then the broker dead-letters the message through the
    // default exchange straight back to the work queue (not to the exchange, so other consumers
    // bound to it never see a retry).
    for (const ms of new Set(retryDelays(this.#retry))) {
      await channel.assertQueue(this.#delayQueue(ms), {
        durable: true,
        arguments: { 'x-queue-type': 'classic', 'x-message-ttl': ms, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': this.queue },
      });
    }
  }

  #dispatch(channel: ConfirmChannel, message: ConsumeMessage): void {
    // After stop() began, deliveries stay unacked and go back to the queue when the channel closes.
    if (this.#stopping) return;
    const key = this.#ordering ? headerText(message.properties.headers?.[WIRE_HEADERS.key]) : null;
    let work: Promise<void>;
    if (key === null) {
      work = this.#process(channel, message);
    } else {
      const previous = this.#keyChains.get(key) ?? Promise.resolve();
      // A delivery queued behind its key whose channel closed (or that waits while stopping)
      // stays unacked: the broker hands it out again after the earlier ones of its key, whereas
      // handling it now could overtake an earlier message that went back to the queue.
      const chained = previous.then(() => (this.#stopping || this.#closedChannels.has(channel) ? undefined : this.#process(channel, message)));
      this.#keyChains.set(key, chained);
      work = chained.finally(() => {
        if (this.#keyChains.get(key) === chained) this.#keyChains.delete(key);
      });
    }
    const tracked = work.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  async #process(channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
    try {
      await this.#processUnsafe(channel, message);
    } catch (error) {
      // Only a broker failure while retrying or dead-lettering gets here: the delivery stays
      // unacked and the broker hands it out again once the channel is gone.
      this.#stats.requeued += 1;
      this.#metrics.requeued.inc({ consumer: this.name });
      this.#logger.warn(`consumer ${this.name}: could not settle a delivery; it will be redelivered`, { error: describeError(error) });
      this.#settle(channel, message, 'requeue');
      // A returned copy means our topology is gone: a fresh channel declares it again.
      if (error instanceof UnroutableError) channel.close().catch(() => undefined);
    }
  }

  async #processUnsafe(channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
    const headers = (message.properties.headers ?? {}) as Record<string, unknown>;
    // Only a message that came back from one of our delay queues (default exchange, routed to
    // this queue) has an attempt count mailroom wrote; any other header value is a producer's.
    const fromRetry = message.fields.exchange === '' && message.fields.routingKey === this.queue;
    const prior = fromRetry ? Number(headerText(headers[WIRE_HEADERS.attempts]) ?? 0) : 0;
    const attempt = Number.isInteger(prior) && prior >= 0 ? prior + 1 : 1;
    const rawId: unknown = message.properties.messageId;

    if (message.content.length > this.#maxBodyBytes) {
      return this.#deadLetter(channel, message, 'oversized', `The body is ${message.content.length} bytes, over the limit of ${this.#maxBodyBytes} (maxBodyBytes).`, attempt, fromRetry);
    }
    if (rawId === undefined || rawId === null || rawId === '') {
      return this.#deadLetter(channel, message, 'missing-message-id', 'The message has no messageId property, so the inbox cannot tell a duplicate from a new message.', attempt, fromRetry);
    }
    if (!isUuid(rawId)) {
      return this.#deadLetter(channel, message, 'invalid-message-id', `The messageId ${typeof rawId === 'string' ? JSON.stringify(rawId.slice(0, 100)) : `(a ${typeof rawId})`} is not a UUID.`, attempt, fromRetry);
    }
    const type: unknown = message.properties.type;
    const binding = typeof type === 'string' ? this.#handlers.get(type) : undefined;
    if (binding === undefined) {
      return this.#deadLetter(
        channel,
        message,
        'unknown-type',
        `No handler for message type ${typeof type === 'string' ? `"${type}"` : '(none)'} in consumer "${this.name}"; it handles ${[...this.#handlers.keys()].map((t) => `"${t}"`).join(', ')}.`,
        attempt,
        fromRetry,
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(utf8.decode(message.content));
    } catch (error) {
      return this.#deadLetter(channel, message, 'not-json', `The body is not UTF-8 JSON: ${describeError(error)}`, attempt, fromRetry);
    }

    const meta = this.#metadata(message, rawId.toLowerCase(), binding.contract.type, headers, attempt, fromRetry);
    const started = performance.now();
    let outcome: Outcome;
    try {
      outcome = await withSpan(
        `${this.queue} process`,
        {
          kind: SpanKind.CONSUMER,
          parent: extractTraceContext(headers),
          attributes: {
            'messaging.system': 'rabbitmq',
            'messaging.operation.type': 'process',
            'messaging.destination.name': this.queue,
            'messaging.message.id': meta.messageId,
            'messaging.consumer.group.name': this.name,
            'mailroom.message.type': meta.type,
            'mailroom.attempt': attempt,
          },
        },
        async (span) => {
          const result = await this.#transaction(binding, body, meta);
          span.setAttribute('mailroom.outcome', result);
          return result;
        },
      );
    } catch (thrown) {
      // An integrity or serialization error at COMMIT (a deferred constraint, a conflict with
      // another transaction) comes from what the handler wrote: it follows the retry policy
      // instead of being requeued forever as if the database were down.
      const error = thrown instanceof HandlerFailure || !isHandlerSqlState(thrown) ? thrown : new HandlerFailure(thrown, 'transient');
      if (!(error instanceof HandlerFailure)) {
        // The inbox insert, BEGIN or COMMIT failed: the database, not the message, is the
        // problem. No attempt is used up; the pause keeps an outage from becoming a hot loop.
        this.#stats.requeued += 1;
        this.#metrics.requeued.inc({ consumer: this.name });
        this.#logger.warn(`consumer ${this.name}: database error, message ${meta.messageId} goes back to the queue`, { error: describeError(error) });
        this.#notify('requeued', { messageId: meta.messageId, error: describeError(error) });
        await sleep(1000, undefined, { ref: false });
        // With ordering, a requeued message would come back after later messages of its key that
        // this process already holds: try it again in place instead, holding its key.
        if (this.#ordering && meta.key !== null && !this.#stopping && !this.#closedChannels.has(channel)) return this.#processUnsafe(channel, message);
        this.#settle(channel, message, 'requeue');
        return;
      }
      if (error.reason === 'aborted') {
        this.#stats.requeued += 1;
        this.#metrics.requeued.inc({ consumer: this.name });
        this.#notify('requeued', { messageId: meta.messageId, error: error.message });
        this.#settle(channel, message, 'requeue');
        return;
      }
      this.#stats.failures += 1;
      this.#metrics.failures.inc({ consumer: this.name, type: meta.type });
      if (error.reason === 'invalid-payload') return this.#deadLetter(channel, message, 'invalid-payload', error.message, attempt, fromRetry);
      if (error.reason === 'non-retryable') return this.#deadLetter(channel, message, 'non-retryable', error.message, attempt, fromRetry);
      if (attempt >= this.#retry.maxAttempts) {
        return this.#deadLetter(channel, message, 'max-attempts', `Failed ${attempt} time(s); last error: ${error.message}`, attempt, fromRetry);
      }
      return this.#retryLater(channel, message, meta, error.message, attempt, fromRetry);
    }
    crashPoint('inbox.after-commit-before-ack');
    this.#settle(channel, message, 'ack');
    const seconds = (performance.now() - started) / 1000;
    if (outcome === 'duplicate') {
      this.#stats.duplicates += 1;
      this.#metrics.duplicates.inc({ consumer: this.name });
      this.#notify('duplicate', meta);
    } else {
      this.#stats.handled += 1;
      this.#metrics.handled.inc({ consumer: this.name, type: meta.type });
      this.#metrics.handlerSeconds.observe(seconds, { consumer: this.name });
      this.#notify('handled', meta, seconds * 1000);
    }
  }

  #metadata(message: ConsumeMessage, messageId: string, type: string, headers: Record<string, unknown>, attempt: number, fromRetry: boolean): MessageMetadata {
    const strings: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers)) {
      const text = headerText(value);
      if (text !== null) strings[name] = text;
    }
    const occurredText = strings[WIRE_HEADERS.occurredAt];
    const occurred = occurredText !== undefined ? new Date(occurredText) : undefined;
    const timestamp: unknown = message.properties.timestamp;
    const occurredAt =
      occurred !== undefined && !Number.isNaN(occurred.getTime()) ? occurred : typeof timestamp === 'number' ? new Date(timestamp * 1000) : new Date();
    const origin = this.#origin(message, headers, fromRetry);
    return {
      messageId,
      type,
      key: strings[WIRE_HEADERS.key] ?? null,
      headers: strings,
      occurredAt,
      attempt,
      redelivered: message.fields.redelivered,
      exchange: origin.exchange,
      routingKey: origin.routingKey,
      consumer: this.name,
      queue: this.queue,
    };
  }

  #origin(message: ConsumeMessage, headers: Record<string, unknown>, fromRetry: boolean): { exchange: string; routingKey: string } {
    if (fromRetry) {
      const exchange = headerText(headers[DEAD_LETTER_HEADERS.originalExchange]);
      const routingKey = headerText(headers[DEAD_LETTER_HEADERS.originalRoutingKey]);
      if (exchange !== null && routingKey !== null) return { exchange, routingKey };
    }
    return { exchange: message.fields.exchange, routingKey: message.fields.routingKey };
  }

  async #transaction(binding: HandlerBinding<TTx>, body: unknown, meta: MessageMetadata): Promise<Outcome> {
    const controller = new AbortController();
    this.#aborts.add(controller);
    const work = async (tx: TTx, db: Executor, alreadyInserted?: boolean): Promise<Outcome> => {
      const inserted =
        alreadyInserted ??
        (await db.query(`INSERT INTO ${this.#inboxTable} (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [this.name, meta.messageId]))
          .rowCount > 0;
      // Nothing was written: committing this transaction commits nothing.
      if (!inserted) return 'duplicate';
      let payload: unknown;
      try {
        payload = binding.contract.parse(body);
      } catch (error) {
        throw new HandlerFailure(error, isMailroomError(error, 'INVALID_PAYLOAD') ? 'invalid-payload' : 'transient');
      }
      try {
        await binding.handle({ payload, tx, db, message: meta, signal: controller.signal });
      } catch (error) {
        // A handler that gave up because stop() aborted it did not fail: no attempt is used.
        throw new HandlerFailure(error, controller.signal.aborted ? 'aborted' : isNonRetryableError(error) ? 'non-retryable' : 'transient');
      }
      crashPoint('inbox.before-commit');
      return 'handled';
    };
    try {
      return await this.#inTransaction(work, meta.messageId);
    } finally {
      this.#aborts.delete(controller);
    }
  }

  async #inTransaction(work: (tx: TTx, db: Executor, alreadyInserted?: boolean) => Promise<Outcome>, messageId: string): Promise<Outcome> {
    const db = this.#db;
    if (isKysely(db)) {
      return db.transaction().execute(async (trx) => {
        const executor = toExecutor(trx);
        const outcome = await work(trx as TTx, executor);
        // kysely does not tell a COMMIT from the ROLLBACK PostgreSQL answers for an aborted
        // transaction; this query fails in one, so the message is retried rather than acked.
        if (outcome === 'handled') {
          await executor.query('SELECT 1').catch(() => {
            throw new HandlerFailure(ABORTED_TRANSACTION, 'transient');
          });
        }
        return outcome;
      });
    }
    if (!isPgPool(db)) throw new MailroomError('UNSUPPORTED_EXECUTOR', 'The consumer needs a pg Pool or a kysely instance.');
    const client = await db.connect();
    let healthy = true;
    // pg emits 'error' on a checked-out client whose connection dies between queries (a
    // terminated backend); with no listener that is an uncaught exception. The pending query
    // fails anyway, so the listener only marks the client for destruction.
    const events = client as unknown as { on?: (e: 'error', l: (error: unknown) => void) => void; off?: (e: 'error', l: (error: unknown) => void) => void };
    const onError = (): void => {
      healthy = false;
    };
    events.on?.('error', onError);
    try {
      const executor = toExecutor(client);
      // BEGIN and the inbox insert in one round trip (simple protocol, so values are inlined:
      // the consumer name is validated against NAME and the message id is a checked UUID).
      const begun = await executor.query(
        `BEGIN; INSERT INTO ${this.#inboxTable} (consumer, message_id) VALUES (${sqlLiteral(this.name)}, ${sqlLiteral(messageId)}) ON CONFLICT DO NOTHING`,
      );
      let result: Outcome;
      try {
        result = await work(client as TTx, executor, begun.rowCount > 0);
      } catch (error) {
        await executor.query('ROLLBACK').catch(() => {
          healthy = false;
        });
        // The handler failed because its connection died (a terminated backend, a reset link):
        // the database, not the message, is the problem. No attempt is used, and with ordering
        // no retry through a delay queue lets later messages of the key overtake this one.
        if (!healthy && error instanceof HandlerFailure && error.reason === 'transient') throw error.original;
        throw error;
      }
      // COMMIT of a transaction that an error aborted (one the handler caught and swallowed)
      // answers ROLLBACK without failing: acking then would lose the message.
      const committed = (await client.query('COMMIT')) as { command?: unknown };
      if (committed.command === 'ROLLBACK') throw new HandlerFailure(ABORTED_TRANSACTION, 'transient');
      return result;
    } catch (error) {
      if (!(error instanceof HandlerFailure)) healthy = false;
      throw error;
    } finally {
      // A client whose connection failed mid-transaction is destroyed, not handed out again.
      events.off?.('error', onError);
      client.release(!healthy);
    }
  }

  #settle(channel: ConfirmChannel, message: ConsumeMessage, how: 'ack' | 'requeue'): void {
    try {
      if (how === 'ack') channel.ack(message);
      else channel.nack(message, false, true);
    } catch {
      // The channel is closed: the broker redelivers the message, and the inbox dedupes it.
    }
  }

  async #retryLater(channel: ConfirmChannel, message: ConsumeMessage, meta: MessageMetadata, error: string, attempt: number, fromRetry: boolean): Promise<void> {
    const delayMs = retryDelayMs(this.#retry, attempt);
    const headers = withoutBrokerHeaders(message.properties.headers ?? {});
    const origin = this.#origin(message, headers, fromRetry);
    headers[WIRE_HEADERS.attempts] = attempt;
    headers[DEAD_LETTER_HEADERS.originalExchange] = origin.exchange;
    headers[DEAD_LETTER_HEADERS.originalRoutingKey] = origin.routingKey;
    // Confirmed before the ack: if the broker never took the copy, the original comes back.
    await publishConfirmed(channel, '', this.#delayQueue(delayMs), message.content, republishOptions(message, headers, message.properties.messageId));
    this.#settle(channel, message, 'ack');
    this.#stats.retries += 1;
    this.#metrics.retries.inc({ consumer: this.name });
    this.#logger.debug(`consumer ${this.name}: message ${meta.messageId} failed attempt ${attempt}, retrying in ${delayMs} ms`, { error });
    this.#notify('retrying', { message: meta, error, delayMs });
  }

  async #deadLetter(channel: ConfirmChannel, message: ConsumeMessage, reason: DeadLetterReason, error: string, attempt: number, fromRetry: boolean): Promise<void> {
    const raw: unknown = message.properties.messageId;
    const valid = isUuid(raw);
    const messageId = valid ? raw.toLowerCase() : deriveMessageId({ source: this.queue, rawMessageId: typeof raw === 'string' ? raw : null, body: message.content });
    const headers = withoutBrokerHeaders(message.properties.headers ?? {});
    const origin = this.#origin(message, headers, fromRetry);
    headers[WIRE_HEADERS.attempts] = attempt;
    headers[DEAD_LETTER_HEADERS.reason] = reason;
    headers[DEAD_LETTER_HEADERS.error] = error.slice(0, 4000);
    headers[DEAD_LETTER_HEADERS.source] = this.queue;
    headers[DEAD_LETTER_HEADERS.failedAt] = new Date().toISOString();
    headers[DEAD_LETTER_HEADERS.originalExchange] = origin.exchange;
    headers[DEAD_LETTER_HEADERS.originalRoutingKey] = origin.routingKey;
    if (!valid && typeof raw === 'string') headers[DEAD_LETTER_HEADERS.originalMessageId] = raw.slice(0, 200);
    // The dead letter is on the broker (confirmed) before the original is acked, so a crash in
    // between leaves a duplicate dead letter, which the sink's upsert absorbs, never a loss.
    await publishConfirmed(channel, this.#deadLetters.exchange, this.queue, message.content, republishOptions(message, headers, messageId));
    crashPoint('inbox.after-dead-letter-before-ack');
    this.#settle(channel, message, 'ack');
    this.#stats.deadLettered += 1;
    this.#metrics.deadLettered.inc({ consumer: this.name, reason });
    this.#logger.warn(`consumer ${this.name}: message ${messageId} dead-lettered (${reason})`, { error });
    this.#notify('deadLettered', { messageId, reason, error, attempt });
  }
}

/**
 * Creates an idempotent consumer; call `start()`.
 *
 * ```ts
 * const consumer = createConsumer({
 *   name: 'billing', db: pool, amqp: 'amqp://localhost',
 *   handlers: [handler(OrderPlaced, async ({ payload, tx }) => { … })],
 * });
 * await consumer.start();
 * ```
 */
export function createConsumer<TTx = Queryable>(options: ConsumerOptions<TTx>): Consumer<TTx> {
  return new Consumer<TTx>(options);
}
