import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage } from 'amqplib';
import { describeError, silentLogger, type AmqpConnection, type Logger } from '@mailroom/core';
import {
  AmqpSubscription,
  crashPoint,
  decodeDeadLetter,
  declareDeadLetterTopology,
  parseConfig,
  resolveAmqpConnection,
  validateIdentifier,
} from '@mailroom/core/internal';
import type { NewDeadLetter } from './dead-letter.js';
import { deadLetterSinkOptionsSchema, type DeadLetterSinkOptions } from './dead-letter-sink-options.js';
import { createDeadLetterStore, type DeadLetterStore } from './dead-letter-store.js';

/** What the sink says about one dead letter. */
export interface StoredDeadLetterInfo {
  messageId: string;
  /** The consumer's queue that gave up on it. */
  source: string;
  reason: string;
}

/** Events of a {@link DeadLetterSink}. */
export interface DeadLetterSinkEvents {
  /** A dead letter's row committed (it is acked right after). */
  stored: [info: StoredDeadLetterInfo];
  /** A dead letter could not be stored; it goes back to the queue after a pause. */
  storeFailed: [info: StoredDeadLetterInfo & { error: string }];
}

/** Counts of a {@link DeadLetterSink} since it was made, each counted after its commit. */
export interface DeadLetterSinkStats {
  /** Dead letters stored (a redelivered one counts again; its row is the same). */
  stored: number;
  /** Attempts to store a dead letter that failed; the message went back to the queue. */
  failures: number;
}

/**
 * Drains the broker-side dead-letter queue into the `dead_letters` table. At least once and
 * idempotent: a message is acked only after its row is committed, and a redelivered one updates
 * the same (source, message id) row. Resubscribes after a lost connection or channel. Hand it
 * to a consumer as `deadLetters.sink`, or run it alone (`mailroom dlq sink`).
 */
export interface DeadLetterSink extends EventEmitter<DeadLetterSinkEvents> {
  /** The queue it drains. */
  readonly queue: string;
  /** Counts since it was made. */
  readonly stats: DeadLetterSinkStats;
  /** Declares the topology and starts draining; resolves once subscribed. */
  start(): Promise<void>;
  /** Stops draining and waits for the dead letters in flight. Always resolves. */
  stop(): Promise<void>;
  /** Same as `stop()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A dead letter from a message on the dead-letter queue: the codec's reading plus the body. */
function deadLetterOf(message: ConsumeMessage): NewDeadLetter {
  const { sealed: _sealed, ...decoded } = decodeDeadLetter(message);
  const deadLetter: NewDeadLetter = { ...decoded, body: message.content };
  try {
    deadLetter.payload = JSON.parse(utf8.decode(message.content)) as unknown;
  } catch {
    // Not JSON: the raw body is kept in `body` instead.
  }
  return deadLetter;
}

class QueueSink extends EventEmitter<DeadLetterSinkEvents> implements DeadLetterSink {
  readonly queue: string;
  readonly #store: DeadLetterStore;
  readonly #connection: AmqpConnection;
  readonly #ownsConnection: boolean;
  readonly #logger: Logger;
  readonly #subscription: AmqpSubscription<Channel>;
  readonly #inFlight = new Set<Promise<void>>();
  #stored = 0;
  #failures = 0;

  constructor(options: DeadLetterSinkOptions) {
    super();
    const o = parseConfig(deadLetterSinkOptionsSchema, options, 'dead-letter sink options');
    validateIdentifier(o.schema);
    this.queue = o.topology.queue;
    this.#store = createDeadLetterStore({ db: o.db, schema: o.schema });
    this.#logger = o.logger ?? silentLogger;
    ({ connection: this.#connection, owned: this.#ownsConnection } = resolveAmqpConnection(o.amqp, {
      name: 'mailroom-dead-letter-sink',
      logger: this.#logger,
    }));
    this.#subscription = new AmqpSubscription<Channel>({
      connection: this.#connection,
      label: 'dead-letter sink',
      logger: this.#logger,
      open: (connection) => connection.createChannel(),
      setup: async (ch) => {
        await declareDeadLetterTopology(ch, o.topology);
        await ch.prefetch(o.prefetch);
        await ch.consume(o.topology.queue, (message) => {
          if (message === null) {
            // The broker cancelled us (queue deleted): start over with a fresh channel.
            ch.close().catch(() => undefined);
            return;
          }
          const work = this.#handle(ch, message).finally(() => this.#inFlight.delete(work));
          this.#inFlight.add(work);
        });
      },
    });
  }

  get stats(): DeadLetterSinkStats {
    return { stored: this.#stored, failures: this.#failures };
  }

  async start(): Promise<void> {
    await this.#subscription.start();
  }

  async stop(): Promise<void> {
    // A resubscription waiting for a broker that is down must not hold up stop(): bounded.
    await this.#subscription.halt();
    await Promise.allSettled([...this.#inFlight]);
    await this.#subscription.close();
    if (this.#ownsConnection) await this.#connection.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #handle(channel: Channel, message: ConsumeMessage): Promise<void> {
    const deadLetter = deadLetterOf(message);
    const info: StoredDeadLetterInfo = { messageId: deadLetter.messageId, source: deadLetter.source, reason: deadLetter.reason };
    try {
      await this.#store.record(deadLetter);
    } catch (error) {
      if (deadLetter.payload === undefined) return this.#giveBack(channel, message, info, error);
      // Some JSON is valid for JavaScript but not for jsonb (a \u0000 in a string): keep the
      // raw body instead of looping on the same message forever.
      try {
        await this.#store.record({ ...deadLetter, payload: undefined });
      } catch (second) {
        return this.#giveBack(channel, message, info, second);
      }
    }
    this.#stored += 1;
    this.emit('stored', info);
    crashPoint('dlq.sink.after-commit-before-ack');
    try {
      channel.ack(message);
    } catch {
      // The channel is gone: the message comes back and the upsert makes it harmless.
    }
  }

  async #giveBack(channel: Channel, message: ConsumeMessage, info: StoredDeadLetterInfo, error: unknown): Promise<void> {
    this.#failures += 1;
    const text = describeError(error);
    this.#logger.error('dead-letter sink could not store a dead letter; it stays on the queue', { error: text });
    this.emit('storeFailed', { ...info, error: text });
    // A pause so a database outage does not turn into a hot redelivery loop.
    await sleep(1000);
    try {
      channel.nack(message, false, true);
    } catch {
      // The channel is gone: the broker requeues the message by itself.
    }
  }
}

/**
 * Creates a dead-letter sink; call `start()`. Options are validated at once (unknown keys and
 * bad values are named in one `INVALID_CONFIG` error).
 */
export function createDeadLetterSink(options: DeadLetterSinkOptions): DeadLetterSink {
  return new QueueSink(options);
}
