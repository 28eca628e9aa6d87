// Names derived from the schema, shared by enqueue and the relay so both always agree.

/** A 31-bit FNV-1a hash: stable, non-negative, so it reads back unchanged from pg_locks.classid. */
export function stableHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & 0x7fffffff;
}

/** The NOTIFY channel the relay listens on for a schema (at most 63 bytes, like any identifier). */
export function notifyChannel(schema: string): string {
  return `mailroom_outbox_${schema}`.slice(0, 63);
}

/**
 * Advisory-lock class of "a relay sleeps": a relay about to sleep holds (this class,
 * `hashtext(schema)`) in SHARE mode on its LISTEN connection, and the outbox's insert trigger
 * (migration 9, `outbox_wake_relay`, which has this number written in) sends a NOTIFY only when it
 * cannot take the lock in EXCLUSIVE mode. The two must agree: it is `stableHash('mailroom.relay-asleep')`.
 */
export const RELAY_ASLEEP_LOCK_CLASS = 1661022995;

/** Advisory-lock class of the per-key enqueue locks. */
export function keyLockClass(schema: string): number {
  return stableHash(`mailroom.key.${schema}`);
}

/** Advisory-lock class of the ordering partitions leased by relays. */
export function partitionLockClass(schema: string): number {
  return stableHash(`mailroom.partition.${schema}`);
}

/** Advisory-lock class of relay membership (one lock per live relay in ordering mode). */
export function memberLockClass(schema: string): number {
  return stableHash(`mailroom.relay.${schema}`);
}

/**
 * Advisory-lock class of the scheduled mover: the relay that holds (this class, 0) in its session
 * moves due scheduled rows; the others wait for the lock (a hot standby, see scheduled-mover.ts).
 */
export function moverLockClass(schema: string): number {
  return stableHash(`mailroom.scheduled-mover.${schema}`);
}
