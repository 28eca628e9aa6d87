/**
 * Why a message became a dead letter: the one vocabulary the relay, the consumers, the sink and
 * the store share (kebab-case, stored in `dead_letters.reason` and shown by `mailroom dlq`).
 * Code names a reason through this object, never by spelling the string.
 */
export const DEAD_LETTER_REASON = {
  /** The payload failed the contract's schema. */
  invalidPayload: 'invalid-payload',
  /** The body is not UTF-8 JSON. */
  notJson: 'not-json',
  /** No handler for the message type. */
  unknownType: 'unknown-type',
  /** The body is larger than the limit of the consumer (`maxBodyBytes`) or the relay (`maxMessageBytes`). */
  oversized: 'oversized',
  /** No `messageId` property: the inbox cannot dedupe it. */
  missingMessageId: 'missing-message-id',
  /** A `messageId` that is not a UUID. */
  invalidMessageId: 'invalid-message-id',
  /** The message's contract version is newer than the consumer's contract knows: replay it once the consumer is upgraded. */
  unknownVersion: 'unknown-version',
  /** The `x-mailroom-version` header is not a version (not a whole number from 1 to 10,000): no consumer can read it. */
  invalidVersion: 'invalid-version',
  /** The handler threw a `NonRetryableError`. */
  nonRetryable: 'non-retryable',
  /** The handler failed on every attempt the retry policy allows. */
  maxAttempts: 'max-attempts',
  /** The broker returned the relay's publish as unroutable on every attempt allowed. */
  unroutable: 'unroutable',
  /** It cannot be published at all: the relay's row, or a consumer's retry copy, that the client or the broker refuses (sizes, limits). */
  unpublishable: 'unpublishable',
  /** On the dead-letter queue without a valid mailroom seal: not written by a mailroom consumer (kept, never replayed). */
  unsealed: 'unsealed',
  /**
   * With ordering on, an earlier message of its key is a dead letter (the head): kept here, not
   * handled out of order, until the head is replayed or discarded, which releases it in order.
   */
  parked: 'parked',
} as const;

/** Why a message became a dead letter: a value of {@link DEAD_LETTER_REASON}. */
export type DeadLetterReason = (typeof DEAD_LETTER_REASON)[keyof typeof DEAD_LETTER_REASON];

/** Every dead-letter reason, in the order of {@link DEAD_LETTER_REASON}. */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = Object.values(DEAD_LETTER_REASON);

const KNOWN = new Set<string>(DEAD_LETTER_REASONS);

/** True when `value` is one of mailroom's dead-letter reasons. */
export function isDeadLetterReason(value: unknown): value is DeadLetterReason {
  return typeof value === 'string' && KNOWN.has(value);
}
