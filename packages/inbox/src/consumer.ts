import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { MailroomError, describeError, isMailroomError, silentLogger, type AmqpConnection, type Logger, type Queryable } from '@mailroom/core';
import {
  AmqpSubscription,
  assertGrants,
  deliveryKey,
  describeTransient,
  guardPool,
  isPgPool,
  quoteIdentifier,
  resolveAmqpConnection,
  retryTransient,
  type EnvelopeSeal,
} from '@mailroom/core/internal';
import { loginRefusedError, permanentStartError } from './broker-refusals.js';
import type { ConsumerContext } from './consumer-context.js';
import { emptyConsumerStats, type ConsumerEvents, type ConsumerStats } from './consumer-events.js';
import { consumerMetrics } from './consumer-metrics.js';
import { resolveConsumerOptions, type ConsumerOptions, type ResolvedConsumerOptions } from './consumer-options.js';
import { registerConsumer } from './consumer-registration.js';
import { loadConsumerSeal } from './consumer-seal.js';
import { declareConsumerTopology, delayQueuesOf } from './consumer-topology.js';
import { processDelivery } from './delivery-processor.js';
import { cleanupInbox } from './inbox-retention.js';
import { createGroupCommitter } from './group-commit.js';
import { runHandlerTransaction } from './handler-transaction.js';
import { createKeySerializer } from './key-serializer.js';
import { PartitionAssignment } from './partition-assignment.js';
import { ParkedKeys } from './parked-keys.js';
import { retryHorizonMs } from './retry-policy.js';

/**
 * An idempotent consumer. Each delivery runs in one database transaction that holds the inbox
 * row (consumer, message id), the payload validation and the handler; the delivery is acked only
 * after the commit. Deliveries that arrive while the consumer's transactions are busy share the
 * next one (group commit, `maxBatchSize`), each in a savepoint of its own. A duplicate commits nothing and is acked. Transient failures come back
 * through delay queues; what cannot be handled goes to the dead letters.
 */
export interface Consumer extends EventEmitter<ConsumerEvents> {
  /** The consumer's name. */
  readonly name: string;
  /** The work queue. */
  readonly queue: string;
  /** What this consumer did since it started (a copy). */
  readonly stats: Readonly<ConsumerStats>;
  /** The delay queue names, one per distinct retry delay (none when partitioned: failures are retried in place). */
  readonly delayQueues: string[];
  /** Partitioned: the partitions this process consumes now (ascending); otherwise empty. */
  readonly partitions: number[];
  /**
   * Registers the consumer in the database, loads the envelope seal, declares the topology,
   * starts the dead-letter sink if one was given, and starts consuming. Resolves once subscribed;
   * a broker that cannot be reached is waited for. Rejects at once, leaving nothing running, on
   * what retrying cannot fix: a schema not migrated (no inbox tables, no seal key), a login the
   * broker refuses, a topology it refuses (403 ACCESS_REFUSED, 404, 406 PRECONDITION_FAILED, 530).
   */
  start(): Promise<void>;
  /**
   * Stops consuming and waits for the handlers in flight, up to `stopTimeoutMs`; then aborts
   * their signals, stops the sink (a bounded wait) and closes. Unacked deliveries go back to the
   * queue. Always resolves.
   */
  stop(): Promise<void>;
  /** Deletes this consumer's inbox rows past the retention window; returns how many. */
  cleanup(): Promise<number>;
  /** Same as `stop()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Creates an idempotent consumer; call `start()`. Throws `INVALID_CONFIG` naming every bad option.
 *
 * ```ts
 * const consumer = createConsumer({
 *   name: 'billing', db: pool, amqp: 'amqp://localhost',
 *   handlers: [handler(OrderPlaced, async ({ payload, tx }) => { … })],
 *   deadLetters: { sink: createDeadLetterSink({ db: pool, amqp: 'amqp://localhost' }) },
 * });
 * await consumer.start();
 * ```
 */
export function createConsumer<TTx = Queryable>(options: ConsumerOptions<TTx>): Consumer {
  return new InboxConsumer<TTx>(resolveConsumerOptions(options));
}

class InboxConsumer<TTx> extends EventEmitter<ConsumerEvents> implements Consumer {
  readonly name: string;
  readonly queue: string;
  readonly #o: ResolvedConsumerOptions<TTx>;
  readonly #logger: Logger;
  readonly #stats = emptyConsumerStats();
  readonly #ctx: ConsumerContext<TTx>;
  readonly #connection: AmqpConnection;
  readonly #ownsConnection: boolean;
  readonly #subscription: AmqpSubscription<ConfirmChannel>;
  readonly #keys = createKeySerializer();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #aborts = new Set<AbortController>();
  // Channels that closed: their unacked deliveries come back from the broker, in queue order.
  readonly #closedChannels = new WeakSet<ConfirmChannel>();
  #consumerTag: string | undefined;
  #started = false;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #cleanupTimer: NodeJS.Timeout | undefined;
  #seal: EnvelopeSeal | undefined;
  #unguardPool: (() => void) | undefined;
  readonly #assignment: PartitionAssignment | undefined;
  readonly #parks: ParkedKeys;

  constructor(options: ResolvedConsumerOptions<TTx>) {
    super();
    this.#o = options;
    this.name = options.name;
    this.queue = options.queue;
    this.#logger = options.logger ?? silentLogger;
    const seal = (): EnvelopeSeal => {
      if (this.#seal === undefined) throw new MailroomError('NOT_CONNECTED', `Consumer "${this.name}" has not loaded its envelope seal: call start().`);
      return this.#seal;
    };
    const inboxTable = `${quoteIdentifier(options.schema)}.inbox`;
    this.#parks = new ParkedKeys(options.db, options.schema, options.queue);
    const metrics = consumerMetrics(options.metrics);
    const group =
      options.maxBatchSize > 1
        ? createGroupCommitter<TTx>({
            db: options.db,
            maxBatchSize: options.maxBatchSize,
            inboxTable,
            consumer: options.name,
            onBroken: (error, size) => {
              metrics.brokenBatches.inc({ consumer: this.name });
              this.#logger.warn(`consumer ${this.name}: the shared transaction of ${size} deliveries broke; they run again one by one (or go back to the queue if the database failed)`, {
                error: describeError(error),
              });
            },
          })
        : undefined;
    this.#ctx = {
      options,
      commit: group ? (t) => group.submit(t) : (t) => runHandlerTransaction(t),
      get seal() {
        return seal();
      },
      inboxTable,
      stats: this.#stats,
      metrics,
      logger: this.#logger,
      notify: (event, ...args) => this.#notify(event, ...args),
      aborts: this.#aborts,
      parks: this.#parks,
      stopping: () => this.#stopping,
      closed: (channel) => this.#closedChannels.has(channel),
    };
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
        ch.once('close', () => this.#closedChannels.add(ch));
        await declareConsumerTopology(ch, options);
        // Partitioned, this channel only declares: each partition has a channel of its own (see partition-assignment.ts).
        if (options.partitions !== undefined) return;
        await ch.prefetch(options.prefetch);
        const reply = await ch.consume(this.queue, (message) => {
          if (message === null) {
            // Cancelled by the broker (queue deleted or failed over): start over.
            ch.close().catch(() => undefined);
            return;
          }
          void this.#dispatch(ch, message);
        });
        this.#consumerTag = reply.consumerTag;
      },
      // What retrying cannot fix (403, 404, 406, 530) makes start() reject instead of hanging.
      fatal: (error) => (isMailroomError(error) ? error : permanentStartError(this.name, this.queue, error)),
      onSubscribed: () => this.#notify('subscribed'),
      onClosed: () => {
        this.#consumerTag = undefined;
      },
    });
    const partitions = options.partitions;
    this.#assignment =
      partitions === undefined
        ? undefined
        : new PartitionAssignment({
            consumer: this.name,
            schema: options.schema,
            queue: this.queue,
            queueType: options.queueType,
            count: partitions.count,
            prefetch: options.prefetch,
            rebalanceMs: partitions.rebalanceMs,
            handoverTimeoutMs: partitions.handoverTimeoutMs,
            pool: partitions.pool,
            connection: this.#connection,
            logger: this.#logger,
            opened: (ch) => ch.once('close', () => this.#closedChannels.add(ch)),
            dispatch: (ch, message) => this.#dispatch(ch, message),
            changed: (held) => {
              // Parks their previous owner wrote: read before any delivery of them is checked (see ParkedKeys).
              if (options.ordering) this.#parks.reload().catch((error: unknown) => this.#logger.warn(`consumer ${this.name}: could not read the parked keys`, { error: describeError(error) }));
              this.#notify('partitions', held);
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

  get stats(): Readonly<ConsumerStats> {
    return { ...this.#stats };
  }

  get delayQueues(): string[] {
    return this.#assignment ? [] : [...delayQueuesOf(this.queue, this.#o.retry).values()];
  }

  get partitions(): number[] {
    return this.#assignment?.held ?? [];
  }

  async start(): Promise<void> {
    if (this.#started) throw new MailroomError('INVALID_CONFIG', `Consumer "${this.name}" is already started; create a new one to start again.`);
    this.#started = true;
    // A missing grant fails start() naming it, instead of a requeue per delivery later. A link
    // reset or a terminated backend during these start-up queries is waited out (up to 30 s).
    try {
      await this.#checkDatabase();
    } catch (error) {
      // stop() during start() (a SIGTERM while the database is still being waited for; the
      // caller may end its pool then): the consumer was told to stop, start() has nothing to do.
      if (this.#stopping) return;
      throw error;
    }
    if (this.#stopping) return;
    // Every client a delivery borrows keeps an 'error' listener from the moment pg hands it out.
    if (isPgPool(this.#o.db)) this.#unguardPool = guardPool(this.#o.db);
    await this.#checkLogin();
    // The sink first: the dead letters of the first deliveries are drained as they come.
    await this.#o.deadLetters.sink?.start();
    try {
      await this.#subscription.start();
    } catch (error) {
      // Nothing may keep retrying behind a start() that failed: stop the sink, the subscription
      // (a resubscription the closed channel scheduled) and the connection.
      await this.stop();
      throw error;
    }
    // The topology is declared: take a share of the partitions (retried in the background while the database is away).
    if (!this.#stopping) await this.#assignment?.start();
    const { cleanupIntervalMs } = this.#o.retention;
    if (cleanupIntervalMs > 0) {
      this.#cleanupTimer = setInterval(() => {
        this.cleanup().catch((error: unknown) => this.#logger.warn('inbox cleanup failed', { error: describeError(error) }));
      }, cleanupIntervalMs);
      this.#cleanupTimer.unref();
    }
  }

  /** The start-up queries: grants, registration and the seal; a reset link is waited out (up to 30 s). */
  async #checkDatabase(): Promise<void> {
    const transient = { onRetry: (error: unknown, ms: number) => this.#logger.warn(`consumer ${this.name} start: ${describeTransient(error, ms)}`) };
    await retryTransient(() => assertGrants(this.#o.db, this.#o.schema, 'consumer', { ordering: this.#o.ordering }), transient);
    await retryTransient(
      () =>
        registerConsumer(this.#o.db, this.#o.schema, {
          consumer: this.name,
          queue: this.queue,
          retentionMs: this.#o.retention.windowMs,
          retryHorizonMs: retryHorizonMs(this.#o.retry),
        }),
      transient,
    );
    this.#seal = await retryTransient(() => loadConsumerSeal(this.#o.db, this.#o.schema, this.name), transient);
    // Sequenced dead letters: the keys parked behind a dead letter of this queue.
    if (this.#o.ordering) await retryTransient(() => this.#parks.reload(), transient);
  }

  // A login the broker refuses (wrong user or password) would be refused on every reconnect: one
  // connection attempt first, on a connection this consumer owns, tells that from an outage
  // (which the subscription then waits out, retrying).
  async #checkLogin(): Promise<void> {
    if (!this.#ownsConnection || this.#connection.connected) return;
    try {
      await this.#connection.connectOnce();
    } catch (error) {
      const refused = loginRefusedError(this.name, error);
      if (refused === undefined) return;
      await this.stop();
      throw refused;
    }
  }

  async cleanup(): Promise<number> {
    const { windowMs, batchSize } = this.#o.retention;
    return cleanupInbox(this.#o.db, { consumer: this.name, windowMs, retry: this.#o.retry, schema: this.#o.schema, batchSize });
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop().catch((error: unknown) => this.#logger.warn('consumer stop failed', { error: describeError(error) }));
    return this.#stopped;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #dispatch(channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
    // After stop() began, deliveries stay unacked and go back to the queue when the channel closes.
    if (this.#stopping) return Promise.resolve();
    const key = this.#o.ordering ? deliveryKey(message) : null;
    const process = (): Promise<void> => processDelivery(this.#ctx, channel, message);
    // A delivery queued behind its key whose channel closed (or that waits while stopping)
    // stays unacked: the broker hands it out again after the earlier ones of its key, whereas
    // handling it now could overtake an earlier message that went back to the queue.
    const work =
      key === null ? process() : this.#keys.run(key, async () => (this.#stopping || this.#closedChannels.has(channel) ? undefined : process()));
    const tracked = work.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
    return tracked;
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
    // Partitioned: no more rebalancing, every partition's consumer cancelled; the leases stay held until the channels closed.
    await this.#assignment?.halt();
    const stopTimeoutMs = this.#o.stopTimeoutMs;
    const all = Promise.allSettled([...this.#inFlight, ...this.#keys.pending()]);
    const timedOut = await Promise.race([all.then(() => false), sleep(stopTimeoutMs, true, { ref: false })]);
    if (timedOut) {
      this.#logger.warn(`consumer ${this.name}: ${this.#inFlight.size} handler(s) still running after ${stopTimeoutMs} ms; aborting them`);
      for (const controller of this.#aborts) controller.abort(new MailroomError('STOPPED', 'The consumer is stopping.'));
      await Promise.race([all, sleep(1000, undefined, { ref: false })]);
    }
    // A resubscription waiting for a broker that is down gets a bounded wait, alongside the sink.
    const sink = this.#o.deadLetters.sink;
    const sinkStopped = sink?.stop().catch((error: unknown) => this.#logger.warn('dead-letter sink stop failed', { error: describeError(error) }));
    await Promise.all([sinkStopped ? Promise.race([sinkStopped, sleep(stopTimeoutMs, undefined, { ref: false })]) : undefined, halting]);
    // The channel may have been replaced by a resubscription while stopping: close both.
    if (channel && channel !== this.#subscription.channel) await Promise.race([channel.close().catch(() => undefined), sleep(2000, undefined, { ref: false })]);
    await this.#subscription.close();
    // Channels first (unacked deliveries go back to the head of their partition), then the leases.
    await this.#assignment?.close();
    if (this.#ownsConnection) await Promise.race([this.#connection.close(), sleep(2000, undefined, { ref: false })]);
    this.#unguardPool?.();
  }
}
