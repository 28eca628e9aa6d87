import type { DeadLetterReason } from '@mailroom/core';
import type { ReplayTarget } from './replay-target.js';

/** A stored dead letter. */
export interface DeadLetter {
  /** The row id (a bigint, as text). */
  id: string;
  /** The message id; a replay publishes the message again under this id. */
  messageId: string;
  /** Who gave up: the consumer's queue, or `relay`. */
  source: string;
  /** Why: a {@link DeadLetterReason} (free text for rows written by other tools). */
  reason: string;
  /** The last error, secret-free. */
  error: string | null;
  /** Delivery or publish attempts made before giving up. */
  attempts: number;
  /** First time this message was dead-lettered from this source. */
  firstFailedAt: Date;
  /** Last time. */
  lastFailedAt: Date;
  /** The message type, when known. */
  type: string | null;
  /** The exchange it was published to. */
  exchange: string | null;
  /** The routing key it was published with. */
  routingKey: string | null;
  /** The ordering key. */
  key: string | null;
  /** The message headers as received (as stored: see `changes`). */
  headers: Record<string, unknown>;
  /** The JSON payload, or null when the body was not JSON (see `body`). */
  payload: unknown;
  /** The raw body when it was not JSON (or not storable as jsonb, or cut at the sink's limit); null otherwise. */
  body: Buffer | null;
  /** The failure group. */
  fingerprint: string;
  /** When it was last replayed; null if never (or if it failed again since). */
  replayedAt: Date | null;
  /**
   * What the dead-letter sink had to change to store it (a NUL replaced, a body cut at the size
   * limit, headers left out, a minimal row); empty when it is stored as received. A changed dead
   * letter is not the message that failed: it is never replayed.
   */
  changes: string[];
  /** Where a replay would publish it (exchange and routing key), or why it cannot be replayed. */
  replayTarget: ReplayTarget;
  /**
   * Set while this message is parked (reason `parked`): the message id of the head, the earlier
   * dead letter of its key it waits behind. Replaying or discarding the head releases it, in order.
   */
  parkedBehind?: string;
}

/** A dead letter to record (see `DeadLetterStore.record`). */
export interface NewDeadLetter {
  /** A UUID; a message that had none gets a derived one (the sink does this). */
  messageId: string;
  /** The consumer's queue, or `relay`. */
  source: string;
  /** Why it is given up on. */
  reason: DeadLetterReason | (string & {});
  /** The error text; keep it secret-free. Default: none. */
  error?: string | null;
  /** Attempts made. Default: 0. */
  attempts?: number;
  /** When it failed. Default: now. */
  failedAt?: Date;
  /** Message type. Default: unknown (null). */
  type?: string | null;
  /** Exchange. Default: unknown (null). */
  exchange?: string | null;
  /** Routing key. Default: unknown (null). */
  routingKey?: string | null;
  /** Ordering key. Default: none. */
  key?: string | null;
  /** Headers. Default: `{}`. */
  headers?: Record<string, unknown>;
  /** The JSON payload. Leave undefined when the body is not JSON and pass `body`. */
  payload?: unknown;
  /** The raw body, stored when `payload` is undefined. Default: none. */
  body?: Uint8Array | null;
  /**
   * What was changed to store it (see `DeadLetter.changes`); a non-empty list means it is never
   * replayed. Default: none.
   */
  changes?: readonly string[];
}

/** One failure group: dead letters with the same fingerprint. */
export interface DeadLetterGroup {
  /** The fingerprint: replay or discard the whole group with it. */
  fingerprint: string;
  /** The source of the group's failures. */
  source: string;
  /** The reason. */
  reason: string;
  /** The message type (the most common one, when several share the fingerprint). */
  type: string | null;
  /** How many dead letters. */
  count: number;
  /** How many have not been replayed (or failed again since their replay). */
  pending: number;
  /** Earliest first failure. */
  firstFailedAt: Date;
  /** Latest failure. */
  lastFailedAt: Date;
  /** One error text of the group. */
  sampleError: string | null;
}
