/**
 * How an envelope travels over AMQP. The relay writes it, the inbox reads it; both use these
 * names so neither guesses the other's format.
 */
export const WIRE_HEADERS = {
  /** The ordering key of the event. */
  key: 'x-mailroom-key',
  /** ISO time at which the producer created the event. */
  occurredAt: 'x-mailroom-occurred-at',
  /** Delivery attempts counted by mailroom (never the broker's `x-death`). */
  attempts: 'x-mailroom-attempts',
} as const;

/** The content type mailroom publishes: JSON, UTF-8. */
export const CONTENT_TYPE = 'application/json';
