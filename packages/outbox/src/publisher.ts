import type { ConfirmChannel, Options } from 'amqplib';
import { CONTENT_TYPE, describeError, type AmqpConnection, type Logger } from '@mailroom/core';
import {
  SpanKind,
  SpanStatusCode,
  confirmOutcome,
  encodeOutboxHeaders,
  occurredAtTimestamp,
  startSpanFromHeaders,
  type PublishOutcome,
  type ReturnedMessage,
} from '@mailroom/core/internal';
import { coalesceWrites } from './coalesced-writes.js';
import { isEncodingError } from './guarded-channel.js';
import { FrameWriter, type ConfirmCallback, type FramedBody } from './publish-frames.js';
import type { OutboxRow } from './relay-sql.js';

/** A publish outcome, or `unpublishable`: amqplib could not encode the row (never worth a retry). */
export type RowPublishOutcome = PublishOutcome | { kind: 'unpublishable'; error: string };

/**
 * A row ready to publish: the byte length of its body (the UTF-8 of `row.payload`, encoded only
 * when it is written) and the headers it goes out with (undefined: none). `slab` and `bodyAt`
 * say where the body was written when it went out as a ready-made frame (publish-frames.ts).
 */
export interface PreparedRow extends FramedBody {
  row: OutboxRow;
  bodyBytes: number;
  headers: Record<string, unknown> | undefined;
}

/** The part of an amqplib ConfirmChannel the relay publishes on. */
type RelayChannel = Pick<ConfirmChannel, 'publish' | 'on' | 'once' | 'removeListener'>;

const PUBLISH_SPAN = 'mailroom publish';

function hasKeys(object: object): boolean {
  for (const name in object) if (Object.hasOwn(object, name)) return true;
  return false;
}

/**
 * Publishes outbox rows on one confirm channel with pipelined confirms: every publish is written
 * at once (waiting for the channel's `drain` when its write buffer is full) and each confirm is
 * delivered to a callback, with no promise per message. Every publish is `mandatory`; a return is
 * matched to its publish by message id (a batch never holds one message id twice), and RabbitMQ
 * sends `basic.return` before the ack of the same publish, so a row counts as confirmed only when
 * the broker acked it and did not return it as unroutable; a nack, a return, a lost channel or
 * the batch's deadline leave it for a retry.
 */
export class ConfirmPublisher {
  #channel: ConfirmChannel | undefined;
  #opening: Promise<ConfirmChannel> | undefined;
  readonly #exchanges = new Set<string>(['']);
  /** Why the broker closed each channel, for the batch that used it. */
  readonly #closedWith = new WeakMap<ConfirmChannel, Error>();
  /** Returned publishes per channel, by message id, until their confirm arrives. */
  readonly #returns = new WeakMap<object, Map<string, string>>();
  /** Each channel's frame writer (publish-frames.ts); none when amqplib is not of the expected shape. */
  readonly #writers = new WeakMap<object, FrameWriter>();

  constructor(
    private readonly connection: AmqpConnection,
    private readonly options: { declareExchanges: boolean; logger: Logger },
  ) {}

  /** Resolves with an open confirm channel, waiting for the connection when it is down. */
  async channel(): Promise<ConfirmChannel> {
    if (this.#channel) return this.#channel;
    this.#opening ??= this.#open().finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  async #open(): Promise<ConfirmChannel> {
    const connection = await this.connection.get();
    const channel = await connection.createConfirmChannel();
    coalesceWrites(channel);
    const writer = FrameWriter.for(channel);
    if (writer !== undefined) this.#writers.set(channel, writer);
    const returns = new Map<string, string>();
    this.#returns.set(channel, returns);
    channel.on('return', (message: ReturnedMessage) => {
      const id = message.properties.messageId;
      if (typeof id !== 'string') return;
      const f = message.fields;
      returns.set(id, `unroutable: ${f.replyCode} ${f.replyText} (exchange "${f.exchange}", routing key "${f.routingKey}")`);
    });
    channel.on('error', (error: Error) => {
      this.#closedWith.set(channel, error);
      // A 404 means an exchange vanished: forget what we knew so it is checked again.
      if (/NOT_FOUND/.test(error.message)) this.#exchanges.clear();
      this.#exchanges.add('');
      this.options.logger.warn('relay channel error', { error: describeError(error) });
    });
    channel.on('close', () => {
      if (this.#channel === channel) this.#channel = undefined;
    });
    this.#channel = channel;
    return channel;
  }

  /**
   * Makes sure each exchange exists, declaring a missing one as a durable topic exchange when
   * allowed. Returns the exchanges that are missing and could not be declared, with the reason.
   */
  async ensureExchanges(names: Iterable<string>): Promise<Map<string, string>> {
    const missing = new Map<string, string>();
    let unknown: string[] | undefined;
    for (const name of names) {
      if (this.#exchanges.has(name)) continue;
      unknown ??= [];
      if (!unknown.includes(name)) unknown.push(name);
    }
    if (unknown === undefined) return missing;
    const connection = await this.connection.get();
    for (const name of unknown) {
      // A failed check closes its channel, so each check gets a throwaway channel of its own.
      const probe = await connection.createChannel();
      probe.on('error', () => undefined);
      const present = await probe.checkExchange(name).then(
        () => true,
        () => false,
      );
      if (present) {
        this.#exchanges.add(name);
        await probe.close().catch(() => undefined);
        continue;
      }
      if (!this.options.declareExchanges) {
        missing.set(name, `unroutable: exchange "${name}" does not exist`);
        continue;
      }
      const declarer = await connection.createChannel();
      declarer.on('error', () => undefined);
      try {
        await declarer.assertExchange(name, 'topic', { durable: true });
        this.#exchanges.add(name);
        this.options.logger.info(`declared missing exchange "${name}" (durable topic)`);
      } catch (error) {
        missing.set(name, `cannot declare exchange "${name}": ${describeError(error)}`);
      } finally {
        await declarer.close().catch(() => undefined);
      }
    }
    return missing;
  }

  /** The error the broker closed `channel` with, if it did. */
  closeErrorOf(channel: ConfirmChannel): Error | undefined {
    return this.#closedWith.get(channel);
  }

  /**
   * The headers a row is published with: the stored ones (the producer's, trace context
   * included) plus the key of a keyed event; undefined when that leaves none. The occurred-at
   * time goes in the `timestamp` property, the id, type and content type in theirs.
   */
  headersOf(row: OutboxRow): Record<string, unknown> | undefined {
    if (row.headers === '{}') return row.key === null ? undefined : encodeOutboxHeaders({}, { key: row.key });
    let stored: Record<string, unknown>;
    try {
      stored = JSON.parse(row.headers) as Record<string, unknown>;
    } catch {
      stored = {};
    }
    if (typeof stored !== 'object' || stored === null || Array.isArray(stored)) stored = {};
    encodeOutboxHeaders(stored, { key: row.key });
    return hasKeys(stored) ? stored : undefined;
  }

  /**
   * Publishes one prepared row on `channel` and calls `settle` once with its outcome when the
   * broker confirms, nacks or returns it, or the channel closes (never for a publish written
   * after the caller stopped listening: the caller ignores late calls). A publish amqplib cannot
   * encode settles at once as `unpublishable`. Returns false when the channel's write buffer is
   * full: wait for {@link drained} before the next publish. `traced` false (no OpenTelemetry SDK
   * registered, see core's `tracingIsOff`) skips the publish span, which would be a no-op that
   * writes nothing into the headers, and its allocations per row; such a publish is gathered with
   * the others into one chunk of ready-made frames (publish-frames.ts), written to the channel by
   * the next publish that does not fit, at the latest in a microtask: before the caller's next
   * `await` resumes.
   */
  publish(channel: ConfirmChannel, prepared: PreparedRow, settle: (outcome: RowPublishOutcome) => void, traced = true): boolean {
    const { row } = prepared;
    const writer = this.#writers.get(channel);
    if (!traced) {
      // The common publish, gathered with the others into one chunk (publish-frames.ts).
      const written = writer?.add(row, prepared.bodyBytes, prepared.headers, this.#confirmed(channel, row.message_id, settle), prepared);
      if (written !== undefined) return written;
    }
    // What goes through amqplib's publish goes on the wire after what was gathered before it.
    writer?.flush();
    const body = Buffer.from(row.payload);
    if (!traced) return this.#write(channel, row, body, prepared.headers, settle);
    // A child of the enqueue span stored in the row; the message carries this span's context on.
    // The span writes its trace context into the headers only when there is one to carry.
    const carrier: Record<string, unknown> = prepared.headers ?? {};
    const span = startSpanFromHeaders(PUBLISH_SPAN, SpanKind.PRODUCER, carrier);
    const recording = span.isRecording();
    if (recording) {
      span.setAttributes({
        'messaging.system': 'rabbitmq',
        'messaging.operation.type': 'send',
        'messaging.destination.name': row.exchange,
        'messaging.rabbitmq.destination.routing_key': row.routing_key,
        'messaging.message.id': row.message_id,
      });
    }
    let headers = prepared.headers;
    if (headers === undefined && hasKeys(carrier)) headers = carrier;
    return this.#write(channel, row, body, headers, (outcome) => {
      if (recording) {
        span.setAttribute('mailroom.outcome', outcome.kind);
        if (outcome.kind !== 'confirmed') span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error });
      }
      span.end();
      settle(outcome);
    });
  }

  /** Writes one publish with the relay's properties; `done` gets its outcome once. */
  #write(channel: ConfirmChannel, row: OutboxRow, body: Buffer, headers: Record<string, unknown> | undefined, done: (outcome: RowPublishOutcome) => void): boolean {
    const properties: Options.Publish = {
      messageId: row.message_id,
      type: row.type,
      contentType: CONTENT_TYPE,
      timestamp: occurredAtTimestamp(row.occurred_ms),
      persistent: true,
      mandatory: true,
    };
    if (headers !== undefined) properties.headers = headers;
    try {
      return channel.publish(row.exchange, row.routing_key, body, properties, this.#confirmed(channel, row.message_id, done));
    } catch (error) {
      // amqplib encodes before it writes or registers the confirm: nothing was sent.
      done(
        isEncodingError(error)
          ? { kind: 'unpublishable', error: `amqplib cannot encode the publish: ${describeError(error)}` }
          : { kind: 'failed', error: describeError(error) },
      );
      return true;
    }
  }

  /** The confirm callback of a publish of `messageId` on `channel`: `done` gets its outcome (a return counts). */
  #confirmed(channel: ConfirmChannel, messageId: string, done: (outcome: RowPublishOutcome) => void): ConfirmCallback {
    const returns = this.#returns.get(channel);
    return (error: unknown) => {
      const returned = returns?.get(messageId);
      if (returned !== undefined) returns?.delete(messageId);
      done(confirmOutcome(error, returned));
    };
  }

  /**
   * Resolves when `channel`'s write buffer drained (after a publish returned false), or when it
   * closed or `deadline` passed: the caller's batch then fails its unsent rows.
   */
  async drained(channel: RelayChannel, deadline: Promise<void>): Promise<void> {
    let onDrain: (() => void) | undefined;
    const drain = new Promise<void>((resolve) => {
      onDrain = resolve;
      channel.once('drain', resolve);
      channel.once('close', resolve);
    });
    try {
      await Promise.race([drain, deadline]);
    } finally {
      if (onDrain !== undefined) {
        channel.removeListener('drain', onDrain);
        channel.removeListener('close', onDrain);
      }
    }
  }

  /** Drops the channel (after a timeout, so late confirms cannot be mistaken for new ones). */
  async reset(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    if (channel) this.#writers.get(channel)?.flush();
    if (channel) await channel.close().catch(() => undefined);
  }

  /** Closes the channel. */
  async close(): Promise<void> {
    await this.reset();
  }
}
