import { once } from 'node:events';
import type { ConfirmChannel, Options } from 'amqplib';
import { CONTENT_TYPE, describeError, type AmqpConnection, type Logger } from '@mailroom/core';
import {
  SpanKind,
  SpanStatusCode,
  encodeOutboxHeaders,
  publishConfirmed,
  startSpanFromHeaders,
  type PublishOutcome,
} from '@mailroom/core/internal';
import { guardChannel, isEncodingError } from './guarded-channel.js';
import type { OutboxRow } from './relay-sql.js';

/** A publish outcome, or `unpublishable`: amqplib could not encode the row (never worth a retry). */
export type RowPublishOutcome = PublishOutcome | { kind: 'unpublishable'; error: string };

/**
 * Publishes outbox rows on one confirm channel with pipelined confirms: every publish is written
 * at once and its confirm awaited together. The publish itself is core's `publishConfirmed`
 * (mandatory, matched by message id: a batch never holds one message id twice), so a row counts
 * as confirmed only when the broker acked it and did not return it as unroutable; a nack, a
 * return, a lost channel or the deadline leave it for a retry.
 */
export class ConfirmPublisher {
  #channel: ConfirmChannel | undefined;
  #opening: Promise<ConfirmChannel> | undefined;
  #waitForDrain: Promise<void> | undefined;
  readonly #exchanges = new Set<string>(['']);
  /** Why the broker closed each channel, for the batch that used it. */
  readonly #closedWith = new WeakMap<ConfirmChannel, Error>();

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
    const unknown = [...new Set(names)].filter((n) => !this.#exchanges.has(n));
    if (unknown.length === 0) return missing;
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

  /** The headers a row is published with: the stored ones plus occurred-at and the key. */
  headersOf(row: OutboxRow): Record<string, unknown> {
    let stored: Record<string, unknown> = {};
    if (row.headers !== '{}') {
      try {
        stored = JSON.parse(row.headers) as Record<string, unknown>;
      } catch {
        stored = {};
      }
    }
    return encodeOutboxHeaders(stored, { key: row.key, occurredAtMs: row.occurred_ms });
  }

  /**
   * Publishes one row with its headers (from {@link headersOf}) and resolves with its outcome;
   * never rejects. `deadline` bounds the wait. A publish amqplib cannot encode is `unpublishable`.
   */
  async publish(channel: ConfirmChannel, row: OutboxRow, headers: Record<string, unknown>, deadline: Promise<void>): Promise<RowPublishOutcome> {
    // A child of the enqueue span stored in the row; the message carries this span's context on.
    const span = startSpanFromHeaders('mailroom publish', SpanKind.PRODUCER, headers, {
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'send',
      'messaging.destination.name': row.exchange,
      'messaging.rabbitmq.destination.routing_key': row.routing_key,
      'messaging.message.id': row.message_id,
    });
    const properties: Options.Publish & { messageId: string; headers: Record<string, unknown> } = {
      messageId: row.message_id,
      type: row.type,
      contentType: CONTENT_TYPE,
      timestamp: Math.floor(row.occurred_ms / 1000),
      persistent: true,
      headers,
    };
    const guarded = guardChannel(channel);
    const { outcome: settled, flowing } = publishConfirmed(guarded, row.exchange, row.routing_key, Buffer.from(row.payload), properties, {
      deadline,
      matchBy: 'messageId',
    });
    const thrown = guarded.takeThrown();
    // Back-pressure: the caller waits for `drained()` before writing the next publish.
    if (!flowing) this.#waitForDrain = once(channel, 'drain').then(() => undefined, () => undefined);
    const outcome: RowPublishOutcome = isEncodingError(thrown)
      ? { kind: 'unpublishable', error: `amqplib cannot encode the publish: ${describeError(thrown)}` }
      : await settled;
    span.setAttribute('mailroom.outcome', outcome.kind);
    if (outcome.kind !== 'confirmed') span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error });
    span.end();
    return outcome;
  }

  /** Waits until the channel's write buffer drained, if a publish reported it full. */
  async drained(): Promise<void> {
    const waiting = this.#waitForDrain;
    this.#waitForDrain = undefined;
    if (waiting) await waiting;
  }

  /** Drops the channel (after a timeout, so late confirms cannot be mistaken for new ones). */
  async reset(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    if (channel) await channel.close().catch(() => undefined);
  }

  /** Closes the channel. */
  async close(): Promise<void> {
    await this.reset();
  }
}
