import { deriveMessageId } from './derived-message-id.js';
import type { DeadLetterReason } from './dead-letter-reason.js';
import { isUuid } from './uuid.js';

/**
 * The envelope codec: the one place that knows how mailroom's envelope travels over AMQP. The
 * relay writes headers with it; the consumer, the dead-letter sink, replay, the chaos nemesis and
 * the tests read and write them with it. No other file spells a mailroom header name.
 *
 * The names on the wire are kept as they were first published, so messages already waiting in
 * a queue (or a delay queue) read the same after an upgrade.
 */
const H = {
  /** The ordering key of the event. */
  key: 'x-mailroom-key',
  /** ISO time at which the producer created the event. */
  occurredAt: 'x-mailroom-occurred-at',
  /** Delivery attempts counted by mailroom (never the broker's `x-death`). */
  attempts: 'x-mailroom-attempts',
  /** Where the message was first published (retry copies go through the default exchange). */
  originExchange: 'x-mailroom-original-exchange',
  originRoutingKey: 'x-mailroom-original-routing-key',
  /** Dead-letter copies: why, the error, who gave up and when. */
  deadReason: 'x-mailroom-dead-reason',
  deadError: 'x-mailroom-dead-error',
  deadSource: 'x-mailroom-dead-source',
  deadAt: 'x-mailroom-dead-at',
  /** The message id as it arrived, when it was missing or not a UUID and one was derived. */
  originalMessageId: 'x-mailroom-original-message-id',
  /** A per-publish id, so a copy the broker returns as unroutable is recognised. */
  publishId: 'x-mailroom-publish-id',
} as const;

/** The prefix of every header name mailroom owns; producers may not set such headers. */
export const RESERVED_HEADER_PREFIX = 'x-mailroom-';

/** The content type mailroom publishes: JSON, UTF-8. */
export const CONTENT_TYPE = 'application/json';

/** The longest error text a dead-letter copy carries. */
const MAX_ERROR_CHARS = 4000;

/** AMQP message properties mailroom reads or copies (amqplib's `MessageProperties` has them). */
export interface WireProperties {
  messageId?: unknown;
  type?: unknown;
  timestamp?: unknown;
  contentType?: unknown;
  contentEncoding?: unknown;
  correlationId?: unknown;
  replyTo?: unknown;
  appId?: unknown;
  priority?: unknown;
  headers?: Record<string, unknown> | undefined;
}

/** A delivery as mailroom reads it (amqplib's `ConsumeMessage` / `Message` fit). */
export interface WireMessage {
  content: Buffer;
  fields: { exchange: string; routingKey: string; redelivered?: boolean };
  properties: WireProperties;
}

/** Properties of a copy mailroom publishes again (a retry or a dead letter). */
export interface CopyProperties {
  persistent: true;
  headers: Record<string, unknown>;
  messageId?: string;
  type?: string;
  contentType?: string;
  contentEncoding?: string;
  correlationId?: string;
  replyTo?: string;
  appId?: string;
  timestamp?: number;
  priority?: number;
}

/** Where a message was first published. */
export interface Origin {
  exchange: string;
  routingKey: string;
}

/** What the consumer reads from a delivery, before validation. */
export interface DecodedDelivery {
  /** The `messageId` property as it arrived (anything a sender put there). */
  rawMessageId: unknown;
  /** The message id, lower-cased, when `rawMessageId` is a UUID; otherwise null. */
  messageId: string | null;
  /** The `type` property when it is a string. */
  type: string | null;
  /** The ordering key. */
  key: string | null;
  /** When the producer created the event (the header, else the AMQP timestamp, else now). */
  occurredAt: Date;
  /** The headers whose values are strings, numbers or booleans, as text. */
  headers: Record<string, string>;
  /** This delivery's attempt, from 1; counted only on copies that came back from a delay queue. */
  attempt: number;
  /** True when the delivery came back from one of this consumer's delay queues. */
  fromRetry: boolean;
  /** Where the message was first published. */
  origin: Origin;
}

/** A dead letter as the sink reads it from the dead-letter queue. */
export interface DecodedDeadLetter {
  messageId: string;
  source: string;
  reason: string;
  error: string | null;
  attempts: number;
  failedAt: Date;
  type: string | null;
  exchange: string | null;
  routingKey: string | null;
  key: string | null;
  /** The headers without mailroom's dead-letter bookkeeping. */
  headers: Record<string, unknown>;
}

/** A header value as text (AMQP long strings arrive as Buffers). */
export function headerText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return null;
}

function isBrokerHeader(lower: string): boolean {
  return lower === 'x-death' || lower.startsWith('x-first-death-') || lower.startsWith('x-last-death-');
}

/** True for a header name mailroom reserves (`x-mailroom-*`, any case). */
export function isReservedHeader(name: string): boolean {
  return name.toLowerCase().startsWith(RESERVED_HEADER_PREFIX);
}

/**
 * The headers the relay publishes an outbox row with: the producer's stored headers (trace
 * context included) plus the occurred-at time and, for keyed events, the key.
 */
export function encodeOutboxHeaders(stored: Record<string, unknown>, row: { key: string | null; occurredAtMs: number }): Record<string, unknown> {
  stored[H.occurredAt] = new Date(row.occurredAtMs).toISOString();
  if (row.key !== null) stored[H.key] = row.key;
  return stored;
}

/** The headers a message published straight to a queue (a test, a tool) needs to look like the relay's. */
export function envelopeHeaders(envelope: { key?: string | null; occurredAt?: Date }): Record<string, string> {
  const headers: Record<string, string> = { [H.occurredAt]: (envelope.occurredAt ?? new Date()).toISOString() };
  if (envelope.key !== undefined && envelope.key !== null) headers[H.key] = envelope.key;
  return headers;
}

/** The ordering key of a delivery, read cheaply (the consumer serializes on it before decoding). */
export function deliveryKey(message: WireMessage): string | null {
  return headerText(message.properties.headers?.[H.key]);
}

/**
 * Reads a delivery as the consumer of `queue` sees it. Only a message that came back from one of
 * the consumer's delay queues (the default exchange, routed to `queue`) has an attempt count and
 * an origin mailroom wrote; on any other message those headers are a sender's and are ignored.
 */
export function decodeDelivery(message: WireMessage, queue: string): DecodedDelivery {
  const raw = message.properties.headers ?? {};
  const fromRetry = message.fields.exchange === '' && message.fields.routingKey === queue;
  const prior = fromRetry ? Number(headerText(raw[H.attempts]) ?? 0) : 0;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    const text = headerText(value);
    if (text !== null) headers[name] = text;
  }
  const rawMessageId = message.properties.messageId;
  const occurredText = headers[H.occurredAt];
  const occurred = occurredText !== undefined ? new Date(occurredText) : undefined;
  const timestamp = message.properties.timestamp;
  const occurredAt =
    occurred !== undefined && !Number.isNaN(occurred.getTime()) ? occurred : typeof timestamp === 'number' ? new Date(timestamp * 1000) : new Date();
  const type = message.properties.type;
  return {
    rawMessageId,
    messageId: isUuid(rawMessageId) ? rawMessageId.toLowerCase() : null,
    type: typeof type === 'string' ? type : null,
    key: headers[H.key] ?? null,
    occurredAt,
    headers,
    attempt: Number.isInteger(prior) && prior >= 0 ? prior + 1 : 1,
    fromRetry,
    origin: originOf(message, fromRetry),
  };
}

function originOf(message: WireMessage, fromRetry: boolean): Origin {
  if (fromRetry) {
    const headers = message.properties.headers ?? {};
    const exchange = headerText(headers[H.originExchange]);
    const routingKey = headerText(headers[H.originRoutingKey]);
    if (exchange !== null && routingKey !== null) return { exchange, routingKey };
  }
  return { exchange: message.fields.exchange, routingKey: message.fields.routingKey };
}

// Headers the broker adds on dead-lettering grow with every retry; they are never read anyway.
function copyHeaders(message: WireMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(message.properties.headers ?? {})) {
    if (!isBrokerHeader(name.toLowerCase())) out[name] = value;
  }
  return out;
}

function copyProperties(message: WireMessage, headers: Record<string, unknown>, messageId: unknown): CopyProperties {
  const p = message.properties;
  const options: CopyProperties = { persistent: true, headers };
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

/** The properties of the copy a failed delivery waits in a delay queue as: its attempt and origin. */
export function encodeRetryCopy(message: WireMessage, delivery: DecodedDelivery): CopyProperties {
  const headers = copyHeaders(message);
  headers[H.attempts] = delivery.attempt;
  headers[H.originExchange] = delivery.origin.exchange;
  headers[H.originRoutingKey] = delivery.origin.routingKey;
  return copyProperties(message, headers, message.properties.messageId);
}

/** What a consumer says about a message it gives up on. */
export interface DeadLetterVerdict {
  reason: DeadLetterReason;
  error: string;
  /** Who gave up: the consumer's queue. */
  source: string;
  failedAt?: Date;
}

/**
 * The properties of the copy a consumer publishes to the dead-letter exchange. A message without
 * a usable id gets a deterministic one derived from its body and `source`, so every redelivery
 * of it lands on the same dead-letter row; the id it came with is kept in a header.
 */
export function encodeDeadLetterCopy(message: WireMessage, delivery: DecodedDelivery, verdict: DeadLetterVerdict): CopyProperties & { messageId: string } {
  const raw = delivery.rawMessageId;
  const messageId =
    delivery.messageId ?? deriveMessageId({ source: verdict.source, rawMessageId: typeof raw === 'string' ? raw : null, body: message.content });
  const headers = copyHeaders(message);
  headers[H.attempts] = delivery.attempt;
  headers[H.deadReason] = verdict.reason;
  headers[H.deadError] = verdict.error.slice(0, MAX_ERROR_CHARS);
  headers[H.deadSource] = verdict.source;
  headers[H.deadAt] = (verdict.failedAt ?? new Date()).toISOString();
  headers[H.originExchange] = delivery.origin.exchange;
  headers[H.originRoutingKey] = delivery.origin.routingKey;
  if (delivery.messageId === null && typeof raw === 'string') headers[H.originalMessageId] = raw.slice(0, 200);
  return { ...copyProperties(message, headers, messageId), messageId };
}

const DEAD_LETTER_BOOKKEEPING = new Set<string>([
  H.deadReason,
  H.deadError,
  H.deadSource,
  H.deadAt,
  H.originalMessageId,
  H.originExchange,
  H.originRoutingKey,
  H.publishId,
]);

/** Reads a dead letter from a message on the dead-letter queue (as a consumer published it). */
export function decodeDeadLetter(message: WireMessage): DecodedDeadLetter {
  const headers = message.properties.headers ?? {};
  const text = (name: string): string | null => headerText(headers[name]);
  const source = text(H.deadSource) ?? 'unknown';
  const rawId = message.properties.messageId;
  const messageId = isUuid(rawId)
    ? rawId.toLowerCase()
    : deriveMessageId({ source, rawMessageId: text(H.originalMessageId) ?? (typeof rawId === 'string' ? rawId : null), body: message.content });
  const failedAt = new Date(text(H.deadAt) ?? Date.now());
  const attempts = Number(headers[H.attempts] ?? 0);
  const kept: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) if (!DEAD_LETTER_BOOKKEEPING.has(name)) kept[name] = value;
  return {
    messageId,
    source,
    reason: text(H.deadReason) ?? 'unknown',
    error: text(H.deadError),
    attempts: Number.isFinite(attempts) ? Math.max(0, Math.trunc(attempts)) : 0,
    failedAt: Number.isNaN(failedAt.getTime()) ? new Date() : failedAt,
    type: typeof message.properties.type === 'string' ? message.properties.type : null,
    exchange: text(H.originExchange),
    routingKey: text(H.originRoutingKey),
    key: text(H.key),
    headers: kept,
  };
}

/** The headers a replay sends again: the producer's own, without mailroom's or the broker's. */
export function replayHeaders(headers: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower.startsWith(RESERVED_HEADER_PREFIX) || isBrokerHeader(lower)) continue;
    if (typeof value === 'string') out[name] = value;
  }
  return out;
}

/** The time the producer created the event, from stored headers; undefined when absent or invalid. */
export function occurredAtOf(headers: Record<string, unknown>): Date | undefined {
  const raw = headers[H.occurredAt];
  const parsed = typeof raw === 'string' ? new Date(raw) : undefined;
  return parsed !== undefined && !Number.isNaN(parsed.getTime()) ? parsed : undefined;
}

/** Adds a per-publish id to `headers`, so that a return of this very publish is recognised. */
export function withPublishId(headers: Record<string, unknown> | undefined, publishId: string): Record<string, unknown> {
  return { ...headers, [H.publishId]: publishId };
}

/** The per-publish id of a returned message, if it carries one. */
export function publishIdOf(properties: WireProperties): string | null {
  return headerText(properties.headers?.[H.publishId]);
}
