import { randomInt } from 'node:crypto';
import type { PgPoolClientLike } from '@mailroom/core';
import { memberLockClass, partitionLockClass } from './names.js';

/**
 * Leases of the key-space partitions in ordering mode, held as session advisory locks on the
 * relay's own connection. A relay that dies or loses that connection loses its leases with it,
 * and PostgreSQL closes the session of a frozen relay after `idle_session_timeout`, so no lease
 * outlives its holder. Each relay takes its fair share: ceil(partitions / live relays), where the
 * live relays are counted by their membership locks in pg_locks.
 */
export class PartitionLease {
  readonly #held = new Set<number>();
  readonly #memberId = randomInt(1, 2 ** 31 - 1);
  readonly #partitionClass: number;
  readonly #memberClass: number;

  constructor(
    private readonly client: PgPoolClientLike,
    schema: string,
    private readonly partitions: number,
    private readonly sessionTimeoutMs: number,
  ) {
    this.#partitionClass = partitionLockClass(schema);
    this.#memberClass = memberLockClass(schema);
  }

  /** The partitions this relay holds now. */
  get held(): number[] {
    return [...this.#held].sort((a, b) => a - b);
  }

  /** Joins the group of relays: bounds the session's idle time and takes the membership lock. */
  async join(): Promise<void> {
    // The session is the relay's own (destroyed when the lease ends): its search_path is pinned too.
    await this.client.query(
      `SELECT pg_catalog.set_config('idle_session_timeout', $1, false), pg_catalog.set_config('idle_in_transaction_session_timeout', $1, false),
         pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)`,
      [`${this.sessionTimeoutMs}ms`],
    );
    await this.client.query('SELECT pg_catalog.pg_advisory_lock($1::int, $2::int)', [this.#memberClass, this.#memberId]);
  }

  /** Renews the leases: gives back partitions over the fair share, takes free ones up to it. */
  async rebalance(): Promise<void> {
    const members = await this.client.query(
      `SELECT pg_catalog.count(*)::int AS n FROM pg_catalog.pg_locks l
        WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted AND l.objsubid OPERATOR(pg_catalog.=) 2
          AND l.classid OPERATOR(pg_catalog.=) $1::int::pg_catalog.oid
          AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())`,
      [this.#memberClass],
    );
    const live = Math.max(1, Number((members.rows[0] as { n: number } | undefined)?.n ?? 1));
    const share = Math.ceil(this.partitions / live);
    if (this.#held.size > share) {
      const extra = this.held.slice(share);
      await this.client.query('SELECT pg_catalog.pg_advisory_unlock($1::int, p) FROM pg_catalog.unnest($2::int[]) AS p', [this.#partitionClass, extra]);
      for (const p of extra) this.#held.delete(p);
    } else if (this.#held.size < share) {
      // Candidates start at a random offset so relays starting together do not collide.
      const offset = randomInt(0, this.partitions);
      const candidates: number[] = [];
      for (let i = 0; i < this.partitions; i++) {
        const p = (offset + i) % this.partitions;
        if (!this.#held.has(p)) candidates.push(p);
      }
      const taken = await this.client.query(
        'SELECT p FROM pg_catalog.unnest($2::int[]) AS p WHERE pg_catalog.pg_try_advisory_lock($1::int, p) LIMIT $3',
        [this.#partitionClass, candidates, share - this.#held.size],
      );
      for (const row of taken.rows as Array<{ p: number }>) this.#held.add(Number(row.p));
    }
  }

  /** Forgets every lease (the session that held them is gone). */
  lost(): void {
    this.#held.clear();
  }
}
