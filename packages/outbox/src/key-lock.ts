import { stableHash } from './names.js';

/**
 * Lock slots per schema for the per-key enqueue lock. Every key hashes to one slot; a
 * transaction locks the slots of its keys, so it holds at most this many advisory locks however
 * many keys it enqueues (PostgreSQL's shared lock table holds about
 * `max_locks_per_transaction × max_connections` locks for the whole server: 6,400 by default).
 * Changing it changes which keys exclude each other: every producer of a schema must agree.
 */
export const KEY_LOCK_SLOTS = 1024;

/**
 * The lock slots of a transaction's keys: distinct and sorted, so two transactions that share
 * slots always take them in the same order and never deadlock on each other within one call.
 *
 * Two keys in one slot are serialized although they are unrelated (false sharing): with 1,024
 * slots two concurrent single-key transactions wait for each other with probability 1/1024, and
 * a transaction with thousands of keys holds nearly every slot, so every keyed enqueue of the
 * schema waits for its commit. Bulk imports should commit in chunks.
 */
export function keyLockSlots(keys: Iterable<string>): number[] {
  const slots = new Set<number>();
  for (const key of keys) slots.add(keyLockSlot(key));
  return [...slots].sort((a, b) => a - b);
}

/** The lock slot of one key. */
export function keyLockSlot(key: string): number {
  return stableHash(key) % KEY_LOCK_SLOTS;
}

/**
 * Takes the transaction-scoped advisory locks of the slots in array order ($1 lock class, $2 the
 * sorted slots). A function scan yields the array in order, so the locks are taken in it.
 */
export const KEY_LOCK_SQL = `SELECT pg_catalog.count(pg_catalog.pg_advisory_xact_lock($1::int, s)) FROM pg_catalog.unnest($2::int[]) AS s`;
