import { EventEmitter } from 'node:events';
import type { ConfirmChannel } from 'amqplib';
import { MailroomError, silentLogger, type AmqpConnection, type Logger } from '@mailroom/core';
import {
  AmqpSubscription,
  declareDeadLetterTopology,
  loadEnvelopeSeal,
  parseConfig,
  resolveAmqpConnection,
  toExecutor,
  validateIdentifier,
  type EnvelopeSeal,
  assertGrants,
  describeTransient,
  retryTransient,
} from '@mailroom/core/internal';
import { deadLetterSinkOptionsSchema, type DeadLetterSinkOptions } from './dead-letter-sink-options.js';
import { createDeadLetterStore, type DeadLetterStore } from './dead-letter-store.js';
import { storeDelivery, type DeadLetterSinkStats, type DeliveryHooks, type StoredDeadLetterInfo } from './sink-delivery.js';
import { sinkMetrics } from './sink-metrics.js';
import type { StoreFailureCause } from './store-failure.js';

export type { DeadLetterSinkStats, StoredDeadLetterInfo } from './sink-delivery.js';

/** Events of a {@link DeadLetterSink}. */
export interface DeadLetterSinkEvents {
  /** A dead letter's row committed (it is acked right after). */
  stored: [info: StoredDeadLetterInfo];
  /**
   * A try to store a dead letter failed. `cause` `environment`: the sink tries again after a
   * backoff, the delivery held; `content`: it stores the minimal row next, or parks the message.
   */
  storeFailed: [info: StoredDeadLetterInfo & { error: string; cause: StoreFailureCause }];
  /** The store refused even the minimal row: the message was moved to the parked queue (then acked). */
  parked: [info: StoredDeadLetterInfo & { error: string }];
}

/**
 * Drains the broker-side dead-letter queue into the `dead_letters` table. At least once and
 * idempotent: a message is acked only after its row is committed, and a redelivered one updates
 * the same (source, message id) row. Checks each message's seal (a message without a valid one is
 * stored as source `unsealed` and never replayed), stores what PostgreSQL would refuse in a
 * storable form with the changes recorded, caps sizes, and never requeues: see the README.
 * Resubscribes after a lost connection or channel. Hand it to a consumer as `deadLetters.sink`,
 * or run it alone (`mailroom dlq sink`).
 */
export interface DeadLetterSink extends EventEmitter<DeadLetterSinkEvents> {
  /** The queue it drains. */
  readonly queue: string;
  /** Where a message the store refuses even in minimal form is moved: `<queue>.parked`. */
  readonly parkedQueue: string;
  /** Counts since it was made. */
  readonly stats: DeadLetterSinkStats;
  /** Loads the envelope seal, declares the topology and starts draining; resolves once subscribed. */
  start(): Promise<void>;
  /** Stops draining and waits for the dead letters in flight (a wait for the database ends at once). Always resolves. */
  stop(): Promise<void>;
  /** Same as `stop()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

class QueueSink extends EventEmitter<DeadLetterSinkEvents> implements DeadLetterSink {
  readonly queue: string;
  readonly parkedQueue: string;
  readonly #options: ReturnType<typeof parseOptions>;
  readonly #store: DeadLetterStore;
  readonly #connection: AmqpConnection;
  readonly #ownsConnection: boolean;
  readonly #logger: Logger;
  readonly #subscription: AmqpSubscription<ConfirmChannel>;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #stats: DeadLetterSinkStats = { stored: 0, failures: 0, unsealed: 0, changed: 0, minimal: 0, parked: 0 };
  #stopping = new AbortController();
  #seal: EnvelopeSeal | undefined;
  #hooks: DeliveryHooks;

  constructor(options: DeadLetterSinkOptions) {
    super();
    const o = parseOptions(options);
    this.#options = o;
    this.queue = o.topology.queue;
    this.parkedQueue = `${o.topology.queue}.parked`;
    this.#store = createDeadLetterStore({ db: o.db, schema: o.schema });
    this.#logger = o.logger ?? silentLogger;
    ({ connection: this.#connection, owned: this.#ownsConnection } = resolveAmqpConnection(o.amqp, {
      name: 'mailroom-dead-letter-sink',
      logger: this.#logger,
    }));
    this.#hooks = this.#makeHooks();
    this.#subscription = new AmqpSubscription<ConfirmChannel>({
      connection: this.#connection,
      label: 'dead-letter sink',
      logger: this.#logger,
      // A confirm channel: parking a message is a confirmed publish before its ack.
      open: (connection) => connection.createConfirmChannel(),
      setup: async (ch) => {
        await declareDeadLetterTopology(ch, o.topology);
        await ch.assertQueue(this.parkedQueue, { durable: true });
        await ch.prefetch(o.prefetch);
        await ch.consume(o.topology.queue, (message) => {
          if (message === null) {
            // The broker cancelled us (queue deleted): start over with a fresh channel.
            ch.close().catch(() => undefined);
            return;
          }
          const work = storeDelivery(this.#hooks, this.#stats, ch, message)
            .catch((error: unknown) => this.#logger.error('dead-letter sink: unexpected failure; the message comes back when the channel closes', { error: String(error) }))
            .finally(() => this.#inFlight.delete(work));
          this.#inFlight.add(work);
        });
      },
    });
  }

  get stats(): DeadLetterSinkStats {
    return { ...this.#stats };
  }

  async start(): Promise<void> {
    if (this.#stopping.signal.aborted) {
      this.#stopping = new AbortController();
      this.#hooks = this.#makeHooks();
    }
    // Without the seal the sink cannot tell a consumer's dead letter from a forgery: no start.
    // A missing grant fails start() naming it, instead of a retry per dead letter later.
    // A link reset or a terminated backend during these start-up queries is waited out (up to 30 s).
    const transient = { onRetry: (error: unknown, ms: number) => this.#logger.warn(`dead-letter sink start: ${describeTransient(error, ms)}`) };
    await retryTransient(() => assertGrants(this.#options.db, this.#options.schema, 'sink'), transient);
    const db = toExecutor(this.#options.db);
    this.#seal ??= await retryTransient(() => loadEnvelopeSeal(db, this.#options.schema), transient);
    await this.#subscription.start();
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    // A resubscription waiting for a broker that is down must not hold up stop(): bounded.
    await this.#subscription.halt();
    await Promise.allSettled([...this.#inFlight]);
    await this.#subscription.close();
    if (this.#ownsConnection) await this.#connection.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #makeHooks(): DeliveryHooks {
    const o = this.#options;
    return {
      store: this.#store,
      seal: () => {
        if (this.#seal === undefined) throw new Error('the dead-letter sink has no seal: start() loads it');
        return this.#seal;
      },
      limits: { maxBodyBytes: o.maxBodyBytes, maxHeaderBytes: o.maxHeaderBytes },
      parkedQueue: this.parkedQueue,
      logger: this.#logger,
      metrics: sinkMetrics(o.metrics),
      signal: this.#stopping.signal,
      isCurrent: (channel) => this.#subscription.channel === channel,
      stored: (info) => this.emit('stored', info),
      storeFailed: (info) => this.emit('storeFailed', info),
      parked: (info) => this.emit('parked', info),
    };
  }
}

/** Parses the options; the parked queue's name must fit AMQP's 255 bytes too, or setup would fail on every try. */
function parseOptions(options: DeadLetterSinkOptions) {
  const o = parseConfig(deadLetterSinkOptionsSchema, options, 'dead-letter sink options');
  validateIdentifier(o.schema);
  if (Buffer.byteLength(`${o.topology.queue}.parked`) > 255) {
    throw new MailroomError('INVALID_CONFIG', `Invalid dead-letter sink options: "topology.queue" is too long: "<queue>.parked" must fit in 255 bytes.`);
  }
  return o;
}

/**
 * Creates a dead-letter sink; call `start()`. Options are validated at once (unknown keys and
 * bad values are named in one `INVALID_CONFIG` error).
 */
export function createDeadLetterSink(options: DeadLetterSinkOptions): DeadLetterSink {
  return new QueueSink(options);
}
