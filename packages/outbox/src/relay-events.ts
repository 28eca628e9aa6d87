import type { DeadLetterReason } from '@mailroom/core';

/** What one committed batch did. */
export interface BatchSummary {
  /** Rows the batch claimed. */
  claimed: number;
  /** Rows confirmed by the broker and deleted from the outbox. */
  published: number;
  /** Rows left in the outbox for a later attempt. */
  retried: number;
  /** Rows moved to the dead letters. */
  deadLettered: number;
  /** From BEGIN to COMMIT, in ms. */
  durationMs: number;
}

/** A row the relay moved to the dead letters (after the move committed). */
export interface RelayDeadLetter {
  messageId: string;
  reason: DeadLetterReason;
  error: string;
}

/** A failure the relay will retry by itself. */
export interface RelayFailure {
  /** Where it failed: `listen`, `batch (worker 0)`, `ordered batch`. */
  stage: string;
  /** The link it failed on: `postgres`, `rabbitmq`, or `other` (a bug: please report it). */
  link: 'postgres' | 'rabbitmq' | 'other';
  error: string;
}

/**
 * Events of a relay. None of them is `error`: a relay never crashes its process by emitting. A
 * listener that throws (or rejects) is logged and counted (`mailroom_relay_listener_errors_total`);
 * the other listeners still run and the batch that emitted stays committed.
 */
export interface RelayEvents {
  /** A batch committed. */
  batch: [summary: BatchSummary];
  /** A row was moved to the dead-letter store (emitted after the move committed). */
  deadLettered: [info: RelayDeadLetter];
  /** Something failed and will be retried (database or broker unreachable, a batch rolled back). */
  failure: [info: RelayFailure];
  /** The relay stopped. */
  stopped: [];
}

/**
 * What the relay did so far, counted from committed batches only: a batch that rolls back is
 * claimed and counted again later, so no row is counted for work that did not stick.
 */
export interface RelayStats {
  /** Rows the broker confirmed, deleted from the outbox. */
  published: number;
  /** Publishes the broker returned as unroutable (or whose exchange is missing). */
  returned: number;
  /** Publishes the broker nacked. */
  nacked: number;
  /** Publishes lost to a closed channel, a lost connection or a confirm timeout. */
  failed: number;
  /** Rows moved to the dead letters. */
  deadLettered: number;
}
