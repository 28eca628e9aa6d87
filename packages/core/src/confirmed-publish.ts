import { randomUUID } from 'node:crypto';
import { propagation, trace } from '@opentelemetry/api';
import { publishIdOf, withPublishId } from './envelope/header-values.js';
import type { WireProperties } from './envelope/wire-types.js';
import { describeError } from './errors.js';

/** What happened to one publish. */
export type PublishOutcome =
  | { kind: 'confirmed' }
  | { kind: 'returned'; error: string }
  | { kind: 'nacked'; error: string }
  | { kind: 'failed'; error: string };

/**
 * What a publish came to, from amqplib's confirm callback: its error (a nack, or the channel's
 * failure) and the broker's return of it as unroutable, if one came before the confirm.
 */
export function confirmOutcome(error: unknown, returned: string | undefined): PublishOutcome {
  if (error !== null && error !== undefined) {
    const text = describeError(error);
    return /nack/i.test(text) ? { kind: 'nacked', error: 'nacked by the broker' } : { kind: 'failed', error: text };
  }
  return returned !== undefined ? { kind: 'returned', error: returned } : { kind: 'confirmed' };
}

/**
 * True when no OpenTelemetry SDK is registered: no global propagator (so nothing is read from or
 * written into headers) and no tracer provider behind the API's proxy (so every span is a no-op).
 * A publisher then skips its publish span and the objects it costs per message; it asks again
 * for every batch, so an SDK registered later is picked up. An API whose proxy does not have the
 * expected shape counts as tracing on.
 */
export function tracingIsOff(): boolean {
  if (propagation.fields().length > 0) return false;
  const provider = trace.getTracerProvider() as { getDelegateTracer?: (name: string) => unknown };
  return typeof provider.getDelegateTracer === 'function' && provider.getDelegateTracer('mailroom') === undefined;
}

/** The part of an amqplib ConfirmChannel a confirmed publish needs. */
export interface ConfirmChannelLike {
  publish(exchange: string, routingKey: string, content: Buffer, options: object, callback: (error: unknown) => void): boolean;
  on(event: 'return', listener: (message: ReturnedMessage) => void): unknown;
}

/** A message the broker returned as unroutable (amqplib's `Message` fits). */
export interface ReturnedMessage {
  properties: WireProperties;
  fields: { replyCode: number; replyText: string; exchange: string; routingKey: string };
}

/** AMQP publish properties (amqplib's `Options.Publish` fits); mailroom reads `messageId` and `headers`. */
export interface PublishProperties {
  messageId?: string;
  headers?: Record<string, unknown>;
}

/** Options of {@link publishConfirmed}. */
export interface PublishConfirmedOptions {
  /** Settles the publish as failed when it resolves first (a timer, a stop signal). */
  deadline: Promise<unknown>;
  /**
   * How a return is matched to this publish: `messageId` (cheap; the caller guarantees no two
   * publishes with one message id are in flight on the channel) or `publishId` (a per-publish
   * header). Default: `publishId`.
   */
  matchBy?: 'messageId' | 'publishId';
}

// Returned publishes per channel, by message id or publish id (filled by each channel's listener).
const returnsOn = new WeakMap<ConfirmChannelLike, Map<string, string>>();

function returnsOf(channel: ConfirmChannelLike): Map<string, string> {
  let returned = returnsOn.get(channel);
  if (returned === undefined) {
    const map = new Map<string, string>();
    returned = map;
    returnsOn.set(channel, map);
    channel.on('return', (message) => {
      const id = publishIdOf(message.properties) ?? (typeof message.properties.messageId === 'string' ? message.properties.messageId : null);
      if (id === null) return;
      const f = message.fields;
      map.set(id, `unroutable: ${f.replyCode} ${f.replyText} (exchange "${f.exchange}", routing key "${f.routingKey}")`);
    });
  }
  return returned;
}

/**
 * Publishes one message `mandatory` on a confirm channel and settles with its outcome; never
 * rejects. It counts as confirmed only when the broker acked it and did not return it as
 * unroutable (RabbitMQ sends basic.return before the ack of the same publish, so the return is
 * known when the ack arrives). `flowing` is false when the channel's write buffer is full: wait
 * for its `drain` before the next publish.
 */
export function publishConfirmed<P extends PublishProperties>(
  channel: ConfirmChannelLike,
  exchange: string,
  routingKey: string,
  content: Buffer,
  properties: P,
  options: PublishConfirmedOptions,
): { outcome: Promise<PublishOutcome>; flowing: boolean } {
  const returned = returnsOf(channel);
  let matchId: string | undefined;
  let publishProperties: object = { ...properties, mandatory: true };
  if ((options.matchBy ?? 'publishId') === 'publishId') {
    matchId = randomUUID();
    publishProperties = { ...publishProperties, headers: withPublishId(properties.headers, matchId) };
  } else {
    matchId = properties.messageId;
  }
  let flowing = true;
  const confirmed = new Promise<PublishOutcome>((resolve) => {
    try {
      flowing = channel.publish(exchange, routingKey, content, publishProperties, (error: unknown) => {
        const returnedAs = matchId === undefined ? undefined : returned.get(matchId);
        if (matchId !== undefined) returned.delete(matchId);
        resolve(confirmOutcome(error, returnedAs));
      });
    } catch (error) {
      resolve({ kind: 'failed', error: describeError(error) });
    }
  });
  const timedOut = options.deadline.then((): PublishOutcome => {
    if (matchId !== undefined) returned.delete(matchId);
    return { kind: 'failed', error: 'no publisher confirm before the deadline' };
  });
  return { outcome: Promise.race([confirmed, timedOut]), flowing };
}
