import { once } from 'node:events';
import type { ConfirmChannel, Options } from 'amqplib';
import { CONTENT_TYPE, SpanKind, SpanStatusCode, WIRE_HEADERS, describeError, startSpanFromHeaders, type AmqpConnection, type Logger } from '@mailroom/core';
import type { OutboxRow } from './relay-sql.js';

/** What happened to one row's publish. */
export type PublishOutcome =
  | { kind: 'confirmed' }
  | { kind: 'returned'; error: string }
  | { kind: 'nacked'; error: string }
  | { kind: 'failed'; error: string }
  | { kind: 'skipped' };

/**
 * Publishes rows on one confirm channel with pipelined confirms: every publish is written at once
 * and its confirm awaited together. A row is confirmed only when the broker acked it and did not
 * return it as unroutable (`mandatory`); a nack, a return, a lost channel or the deadline leave it
 * for a retry.
 */
export class ConfirmPublisher {
  #channel: ConfirmChannel | undefined;
  #opening: Promise<ConfirmChannel> | undefined;
  readonly #returned = new Map<string, string>();
  readonly #exchanges = new Set<string>(['']);

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
    channel.on('return', (message: { properties: { messageId?: unknown }; fields: { replyCode: number; replyText: string; exchange: string; routingKey: string } }) => {
      const id = message.properties.messageId;
      if (typeof id === 'string') {
        const f = message.fields;
        this.#returned.set(id, `unroutable: ${f.replyCode} ${f.replyText} (exchange "${f.exchange}", routing key "${f.routingKey}")`);
      }
    });
    channel.on('error', (error: Error) => {
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

  /** Publishes one row and resolves with its outcome; never rejects. `deadline` bounds the wait. */
  async publish(channel: ConfirmChannel, row: OutboxRow, deadline: Promise<void>): Promise<PublishOutcome> {
    let headers: Record<string, unknown> = {};
    if (row.headers !== '{}') {
      try {
        headers = JSON.parse(row.headers) as Record<string, unknown>;
      } catch {
        headers = {};
      }
    }
    headers[WIRE_HEADERS.occurredAt] = new Date(row.occurred_ms).toISOString();
    if (row.key !== null) headers[WIRE_HEADERS.key] = row.key;
    // A child of the enqueue span stored in the row; the message carries this span's context on.
    const span = startSpanFromHeaders('mailroom publish', SpanKind.PRODUCER, headers, {
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'send',
      'messaging.destination.name': row.exchange,
      'messaging.rabbitmq.destination.routing_key': row.routing_key,
      'messaging.message.id': row.message_id,
    });
    const properties: Options.Publish = {
      messageId: row.message_id,
      type: row.type,
      contentType: CONTENT_TYPE,
      timestamp: Math.floor(row.occurred_ms / 1000),
      persistent: true,
      mandatory: true,
      headers,
    };
    const confirmed = new Promise<PublishOutcome>((resolve) => {
      try {
        const flowing = channel.publish(row.exchange, row.routing_key, Buffer.from(row.payload), properties, (error: unknown) => {
          const returned = this.#returned.get(row.message_id);
          this.#returned.delete(row.message_id);
          if (error !== null && error !== undefined) {
            const text = describeError(error);
            resolve(/nack/i.test(text) ? { kind: 'nacked', error: 'nacked by the broker' } : { kind: 'failed', error: text });
          } else if (returned !== undefined) {
            resolve({ kind: 'returned', error: returned });
          } else {
            resolve({ kind: 'confirmed' });
          }
        });
        if (!flowing) this.#waitForDrain = once(channel, 'drain').then(() => undefined, () => undefined);
      } catch (error) {
        resolve({ kind: 'failed', error: describeError(error) });
      }
    });
    const timedOut = deadline.then((): PublishOutcome => ({ kind: 'failed', error: 'no publisher confirm before the deadline' }));
    const outcome = await Promise.race([confirmed, timedOut]);
    span.setAttribute('mailroom.outcome', outcome.kind);
    if (outcome.kind !== 'confirmed') span.setStatus({ code: SpanStatusCode.ERROR, message: 'error' in outcome ? outcome.error : outcome.kind });
    span.end();
    return outcome;
  }

  #waitForDrain: Promise<void> | undefined;

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
    this.#returned.clear();
    if (channel) await channel.close().catch(() => undefined);
  }

  /** Closes the channel. */
  async close(): Promise<void> {
    await this.reset();
  }
}
