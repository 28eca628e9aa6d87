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
  /** Message ids still sitting in the work and retry queues. */
  queuedIds: string[];
  /** The dead-letter store. */
  deadLetters: Array<{ messageId: string; source: string; reason: string }>;
}

/** A final state with nothing in it: what the checker judges when the run never got to its final reads. */
export function emptyFinalState(): FinalState {
  return { domain: [], outbox: [], inbox: [], ledger: [], queues: [], queuedIds: [], deadLetters: [] };
}
