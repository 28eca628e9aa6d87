import type { DeadLetterReason } from '@mailroom/core';
import type { MessageMetadata } from './handler.js';

/**
 * Counts of what a consumer did since it started (the same numbers as its metrics). Each is
 * counted once the work it counts is done: after the commit and the ack, or after the broker
 * confirmed the copy.
 */
export interface ConsumerStats {
  /** Deliveries whose handler committed. */
  handled: number;
  /** Deliveries found in the inbox already: acked, nothing committed. */
  duplicates: number;
  /** Of `duplicates`, those whose body differs from the one handled (same id, another payload). */
  conflictingDuplicates: number;
  /** Deliveries that came by the delay-queue route with retry headers but no valid seal (forged retry state), handled as attempt 1. */
  forged: number;
  /** Handler failures (each retried or dead-lettered). */
  failures: number;
  /** Deliveries sent to a delay queue for another attempt. */
  retries: number;
  /** Deliveries sent to the dead letters. */
  deadLettered: number;
  /** Deliveries given back to the queue because the database or broker failed (no attempt used). */
  requeued: number;
  /**
   * Handler transactions PostgreSQL undid for a deadlock or a serialization failure, each run
   * again at once in place (no attempt used, not counted in `failures`), up to
   * {@link LOCK_CONFLICT_RERUNS} times per delivery before the retry policy takes over.
   */
  lockConflicts: number;
}

/** How many times in a row a delivery's transaction is run again at once after a deadlock or serialization failure. */
export const LOCK_CONFLICT_RERUNS = 3;

/** Stats of a consumer that did nothing yet. */
export function emptyConsumerStats(): ConsumerStats {
  return { handled: 0, duplicates: 0, conflictingDuplicates: 0, forged: 0, failures: 0, retries: 0, deadLettered: 0, requeued: 0, lockConflicts: 0 };
}

/** What the `deadLettered` event tells. */
export interface DeadLetteredInfo {
  /** The message id (derived from the body when the delivery had none, or not a UUID). */
  messageId: string;
  /** Why. */
  reason: DeadLetterReason;
  /** The error, as text. */
  error: string;
  /** The attempt that gave up, from 1. */
  attempt: number;
}

/** Events of a consumer. Nothing throws if nobody listens, and a listener that throws is logged, never fatal. */
export interface ConsumerEvents {
  /** Subscribed (again, after a reconnect). */
  subscribed: [];
  /** A handler committed. */
  handled: [message: MessageMetadata, durationMs: number];
  /** A duplicate delivery was acked without running the handler. */
  duplicate: [message: MessageMetadata];
  /**
   * A duplicate whose body differs from the one handled under its id (after `duplicate`): acked,
   * the first one's effect stays. Hashes are hex SHA-256 of the bodies.
   */
  conflictingDuplicate: [info: { message: MessageMetadata; storedHash: string; receivedHash: string }];
  /** A delivery came by the delay-queue route without a valid seal; its retry state was ignored. */
  forged: [info: { messageId: string; queue: string }];
  /** A failed delivery will be attempted again after `delayMs`. */
  retrying: [info: { message: MessageMetadata; error: string; delayMs: number }];
  /** A delivery went to the dead letters. */
  deadLettered: [info: DeadLetteredInfo];
  /** A delivery went back to the queue because of an infrastructure error. */
  requeued: [info: { messageId: string; error: string }];
  /** Partitioned: the partitions this process consumes changed (ascending). */
  partitions: [held: number[]];
}
