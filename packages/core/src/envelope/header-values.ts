import { H, RESERVED_HEADER_PREFIX } from './header-names.js';
import type { WireMessage, WireProperties } from './wire-types.js';

/** A header value as text (AMQP long strings arrive as Buffers). */
export function headerText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return null;
}

/** True for a header the broker adds when it dead-letters (`x-death` and its summaries). */
export function isBrokerHeader(lower: string): boolean {
  return lower === 'x-death' || lower.startsWith('x-first-death-') || lower.startsWith('x-last-death-');
}

/** True for a header name mailroom reserves (`x-mailroom-*`, any case). */
export function isReservedHeader(name: string): boolean {
  return name.toLowerCase().startsWith(RESERVED_HEADER_PREFIX);
}

/**
 * The headers the relay publishes an outbox row with: the producer's stored headers (trace
 * context included) plus, for keyed events, the key. Nothing else: every header costs the broker
 * per message, so what has an AMQP property travels in it (the occurred-at time in `timestamp`,
 * see {@link occurredAtTimestamp}). `occurredAtMs` is accepted for callers of the older shape and
 * ignored. An event without key and stored headers is published with no headers at all.
 */
export function encodeOutboxHeaders(stored: Record<string, unknown>, row: { key: string | null; occurredAtMs?: number }): Record<string, unknown> {
  if (row.key !== null) stored[H.key] = row.key;
  return stored;
}

/**
 * The AMQP `timestamp` property of an event that occurred at `occurredAtMs`: whole seconds since
 * the epoch (the property's unit), rounded down. A consumer reads it back as `occurredAt` with
 * whole-second precision; messages published before with the `x-mailroom-occurred-at` header keep
 * its millisecond precision (see decodeDelivery).
 */
export function occurredAtTimestamp(occurredAtMs: number): number {
  return Math.floor(occurredAtMs / 1000);
}

/** The occurred-at time a message carries: the old header when present and valid, else the `timestamp` property. */
export function occurredAtOfMessage(properties: WireProperties): Date | undefined {
  const text = headerText(properties.headers?.[H.occurredAt]);
  const fromHeader = text === null ? undefined : new Date(text);
  if (fromHeader !== undefined && !Number.isNaN(fromHeader.getTime())) return fromHeader;
  const timestamp = properties.timestamp;
  return typeof timestamp === 'number' && Number.isFinite(timestamp) ? new Date(timestamp * 1000) : undefined;
}

/**
 * The headers a message published straight to a queue (a test, a tool) needs to read like the
 * relay's: the key, and the occurred-at time in the `x-mailroom-occurred-at` header, the form
 * relays wrote before they moved it to the `timestamp` property and that every reader still
 * takes first (so a test message keeps millisecond precision).
 */
export function envelopeHeaders(envelope: { key?: string | null; occurredAt?: Date }): Record<string, string> {
  const headers: Record<string, string> = { [H.occurredAt]: (envelope.occurredAt ?? new Date()).toISOString() };
  if (envelope.key !== undefined && envelope.key !== null) headers[H.key] = envelope.key;
  return headers;
}

/** The ordering key of a delivery, read cheaply (the consumer serializes on it before decoding). */
export function deliveryKey(message: WireMessage): string | null {
  return headerText(message.properties.headers?.[H.key]);
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

/**
 * The time the producer created the event, from headers (the `x-mailroom-occurred-at` header that
 * relays before the `timestamp` property wrote, and that the dead-letter sink stores, see
 * decodeDeadLetter); undefined when absent or invalid.
 */
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

