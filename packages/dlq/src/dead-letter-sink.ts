import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel, ConsumeMessage, Message } from 'amqplib';
import {
  AmqpSubscription,
  DEFAULT_SCHEMA,
  WIRE_HEADERS,
  crashPoint,
  resolveAmqpConnection,
  describeError,
  isUuid,
  silentLogger,
  type AmqpConnection,
  type Logger,
  type Queryable,
} from '@mailroom/core';
import { DEAD_LETTER_HEADERS, deriveMessageId } from './dead-letter-headers.js';
import { createDeadLetterStore, type DeadLetterStore, type NewDeadLetter } from './dead-letter-store.js';
import { declareDeadLetterTopology, resolveDeadLetterTopology, type DeadLetterTopology } from './topology.js';

/** Options of {@link createDeadLetterSink}. */
export interface DeadLetterSinkOptions {
  /** A pg Pool or a kysely instance; dead letters are written to `<schema>.dead_letters`. */
  db: Queryable;
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** A RabbitMQ URL (the sink opens and closes its own connection) or a shared connection. */
  amqp: string | AmqpConnection;
  /** The dead-letter exchange and queue to drain. Default: `mailroom.dead-letters` for both. */
  topology?: DeadLetterTopology;
  /** Unacknowledged dead letters in flight. Default: 20. */
  prefetch?: number;
  /** Where problems are logged. Default: silent. */
  logger?: Logger;
}

const BOOKKEEPING = new Set<string>(Object.values(DEAD_LETTER_HEADERS));
const utf8 = new TextDecoder('utf-8', { fatal: true });

function headerString(headers: Record<string, unknown>, name: string): string | null {
  const value = headers[name];
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return null;
}

/** Reads a dead letter from a message on the dead-letter queue (as the consumer published it). */
export function deadLetterFromMessage(message: Message): NewDeadLetter {
  const headers = (message.properties.headers ?? {}) as Record<string, unknown>;
  const source = headerString(headers, DEAD_LETTER_HEADERS.source) ?? 'unknown';
  const rawId: unknown = message.properties.messageId;
  const messageId = isUuid(rawId)
    ? rawId.toLowerCase()
    : deriveMessageId({
        source,
        rawMessageId: headerString(headers, DEAD_LETTER_HEADERS.originalMessageId) ?? (typeof rawId === 'string' ? rawId : null),
        body: message.content,
      });
  const failedAt = new Date(headerString(headers, DEAD_LETTER_HEADERS.failedAt) ?? Date.now());
  const attempts = Number(headers[WIRE_HEADERS.attempts] ?? 0);
  const kept: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) if (!BOOKKEEPING.has(name)) kept[name] = value;
  const deadLetter: NewDeadLetter = {
    messageId,
    source,
    reason: headerString(headers, DEAD_LETTER_HEADERS.reason) ?? 'unknown',
    error: headerString(headers, DEAD_LETTER_HEADERS.error),
    attempts: Number.isFinite(attempts) ? Math.max(0, Math.trunc(attempts)) : 0,
    failedAt: Number.isNaN(failedAt.getTime()) ? new Date() : failedAt,
    type: typeof message.properties.type === 'string' ? message.properties.type : null,
    exchange: headerString(headers, DEAD_LETTER_HEADERS.originalExchange),
    routingKey: headerString(headers, DEAD_LETTER_HEADERS.originalRoutingKey),
    key: headerString(headers, WIRE_HEADERS.key),
    headers: kept,
    body: message.content,
  };
  try {
    deadLetter.payload = JSON.parse(utf8.decode(message.content)) as unknown;
  } catch {
    // Not JSON: the raw body is kept in `body` instead.
  }
  return deadLetter;
}

/**
 * Drains the broker-side dead-letter queue into the `dead_letters` table. At least once and
 * idempotent: a message is acked only after its row is committed, and a redelivered one updates
 * the same (source, message id) row. Resubscribes after a lost connection or channel.
 */
export class DeadLetterSink {
  readonly #options: DeadLetterSinkOptions;
  readonly #store: DeadLetterStore;
  readonly #topology: Required<DeadLetterTopology>;
  readonly #connection: AmqpConnection;
  readonly #ownsConnection: boolean;
  readonly #logger: Logger;
  readonly #subscription: AmqpSubscription<Channel>;
  readonly #inFlight = new Set<Promise<void>>();
  #stored = 0;

  /** Use {@link createDeadLetterSink}. */
  constructor(options: DeadLetterSinkOptions) {
    this.#options = options;
    this.#store = createDeadLetterStore({ db: options.db, schema: options.schema ?? DEFAULT_SCHEMA });
    this.#topology = resolveDeadLetterTopology(options.topology);
    this.#logger = options.logger ?? silentLogger;
    ({ connection: this.#connection, owned: this.#ownsConnection } = resolveAmqpConnection(options.amqp, {
      name: 'mailroom-dead-letter-sink',
      logger: this.#logger,
    }));
    this.#subscription = new AmqpSubscription<Channel>({
      connection: this.#connection,
      label: 'dead-letter sink',
      logger: this.#logger,
      open: (connection) => connection.createChannel(),
      setup: async (ch) => {
        await declareDeadLetterTopology(ch, this.#topology);
        await ch.prefetch(this.#options.prefetch ?? 20);
        await ch.consume(this.#topology.queue, (message) => {
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

  /** Dead letters stored by this sink since it started. */
  get stored(): number {
    return this.#stored;
  }

  /** Declares the topology and starts draining; resolves once subscribed. */
  async start(): Promise<void> {
    await this.#subscription.start();
  }

  /** Stops draining and waits for the dead letters in flight. Always resolves. */
  async stop(): Promise<void> {
    // A resubscription waiting for a broker that is down must not hold up stop(): bounded.
    await this.#subscription.halt();
    await Promise.allSettled([...this.#inFlight]);
    await this.#subscription.close();
    if (this.#ownsConnection) await this.#connection.close();
  }

  /** Same as {@link stop}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #handle(channel: Channel, message: ConsumeMessage): Promise<void> {
    const deadLetter = deadLetterFromMessage(message);
    try {
      await this.#store.record(deadLetter);
    } catch (error) {
      if (deadLetter.payload !== undefined) {
        // Some JSON is valid for JavaScript but not for jsonb (a \u0000 in a string): keep the
        // raw body instead of looping on the same message forever.
        try {
          await this.#store.record({ ...deadLetter, payload: undefined });
        } catch (second) {
          await this.#giveBack(channel, message, second);
          return;
        }
      } else {
        await this.#giveBack(channel, message, error);
        return;
      }
    }
    this.#stored += 1;
    crashPoint('dlq.sink.after-commit-before-ack');
    try {
      channel.ack(message);
    } catch {
      // The channel is gone: the message comes back and the upsert makes it harmless.
    }
  }

  async #giveBack(channel: Channel, message: ConsumeMessage, error: unknown): Promise<void> {
    this.#logger.error('dead-letter sink could not store a dead letter; it stays on the queue', { error: describeError(error) });
    // A pause so a database outage does not turn into a hot redelivery loop.
    await sleep(1000);
    try {
      channel.nack(message, false, true);
    } catch {
      // The channel is gone: the broker requeues the message by itself.
    }
  }
}

/** Creates a {@link DeadLetterSink}; call `start()`. */
export function createDeadLetterSink(options: DeadLetterSinkOptions): DeadLetterSink {
  return new DeadLetterSink(options);
}
