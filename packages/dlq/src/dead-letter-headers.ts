import { createHash } from 'node:crypto';

/**
 * Headers a dead-lettered message carries on its way through the broker-side dead-letter queue.
 * The sink reads them into the store; they are never read from a message a producer sent.
 */
export const DEAD_LETTER_HEADERS = {
  /** Why the message was given up on: a {@link DeadLetterReason}. */
  reason: 'x-mailroom-dead-reason',
  /** The error text (secret-free). */
  error: 'x-mailroom-dead-error',
  /** Who gave up: the consumer's queue, or `relay`. */
  source: 'x-mailroom-dead-source',
  /** ISO time of the failure. */
  failedAt: 'x-mailroom-dead-at',
  /** The message id as it arrived, when it was missing or not a UUID and one was derived. */
  originalMessageId: 'x-mailroom-original-message-id',
  /** The exchange the message was first published to (retries go through the default exchange). */
  originalExchange: 'x-mailroom-original-exchange',
  /** The routing key the message was first published with. */
  originalRoutingKey: 'x-mailroom-original-routing-key',
  /** A per-publish id, so a copy the broker returns as unroutable is recognised. */
  publishId: 'x-mailroom-publish-id',
} as const;

/** Why a message became a dead letter. */
export type DeadLetterReason =
  /** The payload failed the contract's schema. */
  | 'invalid-payload'
  /** The body is not UTF-8 JSON. */
  | 'not-json'
  /** No handler for the message type. */
  | 'unknown-type'
  /** The body is larger than the consumer's limit. */
  | 'oversized'
  /** No `messageId` property: the inbox cannot dedupe it. */
  | 'missing-message-id'
  /** A `messageId` that is not a UUID. */
  | 'invalid-message-id'
  /** The handler threw a `NonRetryableError`. */
  | 'non-retryable'
  /** The handler failed on every attempt the retry policy allows. */
  | 'max-attempts'
  /** The relay could not publish the row. */
  | 'unpublishable';

/**
 * A deterministic message id for a message that arrived without a usable one, so that every
 * redelivery of it lands on the same dead-letter row. A UUID (version 8 layout) from a SHA-256
 * of the source, the raw id and the body: two id-less messages with the same body on the same
 * queue are one dead letter.
 */
export function deriveMessageId(parts: { source: string; rawMessageId?: string | null; body: Uint8Array }): string {
  const hash = createHash('sha256')
    .update(parts.source)
    .update('\u0000')
    .update(parts.rawMessageId ?? '')
    .update('\u0000')
    .update(parts.body)
    .digest();
  hash[6] = ((hash[6] ?? 0) & 0x0f) | 0x80;
  hash[8] = ((hash[8] ?? 0) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
