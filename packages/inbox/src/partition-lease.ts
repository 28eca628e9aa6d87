import { randomInt } from 'node:crypto';
import type { PgPoolClientLike } from '@mailroom/core';

/** A 31-bit FNV-1a hash: stable, non-negative, so it reads back unchanged from `pg_locks.classid`. */
function stableHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) & 0x7fffffff;
}

/**
 * The advisory-lock classes of one consumer's partitions and members. They hash the schema and
 * the consumer's name (a consumer's partitions are its own): two consumers whose hashes collide
 * would only share their fair-share arithmetic and wait for each other's partitions, never
 * handle one partition twice (SAC on the queue still holds).
 */
export function partitionLockClasses(schema: string, consumer: string): { partition: number; member: number } {
  return { partition: stableHash(`mailroom.consumer-partition.${schema}.${consumer}`), member: stableHash(`mailroom.consumer-member.${schema}.${consumer}`) };
}

/**
 * Leases of a partitioned consumer's partitions, held as session advisory locks on one
 * connection the consumer keeps for its life (the idea of the relay's ordering leases). A
 * process that dies, or loses that connection, loses its leases with it at once; a frozen one
 * loses them after `idle_session_timeout`. Each process takes its fair share,
 * ceil(partitions / live processes), the live ones counted by their membership locks. Unlike the
 * relay's, giving a lease back is two steps (the caller drains the partition in between), so
 * the lease never leaves a process while it still holds deliveries of that partition.
 */
export class ConsumerPartitionLease {
  readonly #held = new Set<number>();
  readonly #memberId = randomInt(1, 2 ** 31 - 1);
  readonly #classes: { partition: number; member: number };

  /** A lease on `client` (a connection of its own) for `partitions` partitions. */
  constructor(
    private readonly client: PgPoolClientLike,
    schema: string,
    consumer: string,
    private readonly partitions: number,
    private readonly sessionTimeoutMs: number,
  ) {
    this.#classes = partitionLockClasses(schema, consumer);
  }

  /** The partitions held now, ascending. */
  get held(): number[] {
    return [...this.#held].sort((a, b) => a - b);
  }

  /** Joins the group: bounds the session's idle time, pins its search_path, takes the membership lock. */
  async join(): Promise<void> {
    await this.client.query(
      `SELECT pg_catalog.set_config('idle_session_timeout', $1, false), pg_catalog.set_config('idle_in_transaction_session_timeout', $1, false),
         pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)`,
      [`${this.sessionTimeoutMs}ms`],
    );
    await this.client.query('SELECT pg_catalog.pg_advisory_lock($1::int, $2::int)', [this.#classes.member, this.#memberId]);
  }

  /** This process's fair share now: ceil(partitions / live members). Also renews the session (a query). */
  async share(): Promise<number> {
    const members = await this.client.query(
      `SELECT pg_catalog.count(*)::int AS n FROM pg_catalog.pg_locks l
        WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted AND l.objsubid OPERATOR(pg_catalog.=) 2
          AND l.classid OPERATOR(pg_catalog.=) $1::int::pg_catalog.oid
          AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())`,
      [this.#classes.member],
    );
    const live = Math.max(1, Number((members.rows[0] as { n: number } | undefined)?.n ?? 1));
    return Math.ceil(this.partitions / live);
  }

  /** Tries to take up to `wanted` free partitions (from a random offset, so processes starting together do not collide); returns those taken. */
  async take(wanted: number): Promise<number[]> {
    if (wanted <= 0) return [];
    const offset = randomInt(0, this.partitions);
    const candidates: number[] = [];
    for (let i = 0; i < this.partitions; i++) {
      const p = (offset + i) % this.partitions;
      if (!this.#held.has(p)) candidates.push(p);
    }
    const taken = await this.client.query('SELECT p FROM pg_catalog.unnest($2::int[]) AS p WHERE pg_catalog.pg_try_advisory_lock($1::int, p) LIMIT $3', [
      this.#classes.partition,
      candidates,
      wanted,
    ]);
    const out = (taken.rows as Array<{ p: number }>).map((r) => Number(r.p));
    for (const p of out) this.#held.add(p);
    return out;
  }

  /** Gives partition `p` back (call once it is drained: no delivery of it in flight here). */
  async giveBack(p: number): Promise<void> {
    this.#held.delete(p);
    await this.client.query('SELECT pg_catalog.pg_advisory_unlock($1::int, $2::int)', [this.#classes.partition, p]);
  }

  /** Forgets every lease (the session that held them is gone). */
  lost(): void {
    this.#held.clear();
  }
}
