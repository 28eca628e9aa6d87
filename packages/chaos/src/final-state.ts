import type { DeliveryTally } from './wire-tap.js';

/** One row of the dead-letter store, as the checker reads it. */
export interface FinalDeadLetter {
  messageId: string;
  source: string;
  reason: string;
  /** Attempts the letter records. */
  attempts?: number;
  /** Where a replay would publish it. */
  exchange?: string | null;
  routingKey?: string | null;
  /**
   * The `eventId` in the letter's payload or body (or the harness's `x-chaos-hostile` header):
   * names the message the harness sent even when the letter's id was derived (an id that was
   * no UUID, an unsealed letter).
   */
  eventId?: string | null;
}

/**
 * What the harness reads once everything healed, drained and stayed quiet: the source of truth
 * the checker compares the history with.
 */
export interface FinalState {
  /** Committed domain rows: one per event of a committed producer transaction. */
  domain: Array<{ eventId: string; key: string; seq: number; createdAt: number }>;
  /** Rows still in the outbox (not published). */
  outbox: Array<{ messageId: string; attempts: number; lastError: string | null }>;
  /** Inbox rows (message ids a consumer committed as handled). */
  inbox: string[];
  /** The effect ledger, in insertion order: one row per handler application. */
  ledger: Array<{ id: number; eventId: string; key: string | null; seq: number | null; appliedAt: number }>;
  /** Message counts of the work, retry and dead-letter queues. */
  queues: Array<{ queue: string; messages: number }>;
  /** Message ids (as sent) still sitting in the work and retry queues. */
  queuedIds: string[];
  /** Message ids (as sent, and hostile markers) still sitting in the dead-letter queue: no sink stored them. */
  deadLetterQueuedIds?: string[];
  /** Message ids (and hostile markers) in the sink's parked queue: letters the store refused even in minimal form. */
  parkedIds?: string[];
  /** The dead-letter store. */
  deadLetters: FinalDeadLetter[];
  /** What the wire tap counted more than once on the AMQP link: deliveries, relay publishes, requeues. */
  deliveries?: DeliveryTally[];
}

/** A final state with nothing in it: what the checker judges when the run never got to its final reads. */
export function emptyFinalState(): FinalState {
  return { domain: [], outbox: [], inbox: [], ledger: [], queues: [], queuedIds: [], deadLetterQueuedIds: [], parkedIds: [], deadLetters: [], deliveries: [] };
}
