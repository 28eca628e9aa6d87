/**
 * What the nemesis records for each hostile message it injects (the `value` of an
 * `inject-hostile` history operation), and what the checker holds it to.
 */
export interface HostileInjection {
  /** A fresh UUID naming the injection: the `eventId` in its body and its `x-chaos-hostile` header. */
  id: string;
  /** The fault kind that injected it (`hostile-headers`, `forged-retry`, `unpublishable-row`, …). */
  kind: string;
  /** What exactly is hostile about it (`near-limit headers, invalid id`, `NUL in type`, …). */
  variant: string;
  /** The AMQP `message-id` it was sent with (may be no UUID, or absent: empty). */
  messageId: string;
  expect: HostileExpectation;
}

/** The only acceptable end of a hostile message. */
export interface HostileExpectation {
  /**
   * It must end as a dead letter (matched by message id or by `eventId`) and take no effect.
   * When false (a conflicting duplicate of an event that took effect), it must take no effect of its own.
   */
  deadLetter: boolean;
  /** What its sender forged: a dead letter of it must carry none of these. */
  forged?: { source?: string; exchange?: string; routingKey?: string };
  /** The most attempts its dead letter may record (a forged attempt count must not be believed). */
  maxAttempts?: number;
  /** A copy with the id of an event that took effect and another payload: a consumer must report the conflict. */
  conflict?: boolean;
}
