/**
 * The envelope codec: the one place that knows how mailroom's envelope travels over AMQP. The
 * relay writes headers with it; the consumer, the dead-letter sink, replay, the chaos nemesis and
 * the tests read and write them with it. No other file spells a mailroom header name.
 *
 * The names on the wire are kept as they were first published, so messages already waiting in
 * a queue (or a delay queue) read the same after an upgrade.
 */
/** Every header name mailroom writes or reads (only the envelope files use these). */
export const H = {
  /** The ordering key of the event. */
  key: 'x-mailroom-key',
  /** The contract version of the payload, from 2 on (absent: version 1; see version-header.ts). */
  version: 'x-mailroom-version',
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
  /** The HMAC over what mailroom wrote into a retry or dead-letter copy (see envelope-seal.ts). */
  seal: 'x-mailroom-seal',
} as const;

/** The prefix of every header name mailroom owns; producers may not set such headers. */
export const RESERVED_HEADER_PREFIX = 'x-mailroom-';

/** The content type mailroom publishes: JSON, UTF-8. */
export const CONTENT_TYPE = 'application/json';
