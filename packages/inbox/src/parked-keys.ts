import { createHash } from 'node:crypto';
import type { Queryable } from '@mailroom/core';
import { quoteIdentifier, toExecutor, type Executor } from '@mailroom/core/internal';

/**
 * What a delivery of a key is, seen against the parks of its queue:
 * - `free`: no park holds its key (or it is the head itself, delivered again): handle it;
 * - `released`: a release sent it back; handle it, and once the `last` of them is handled the
 *   park is lifted (see {@link ParkedKeys.lift});
 * - `parked`: an earlier message of its key (`head`) is a dead letter: store it, do not handle it.
 */
export type ParkCheck = { kind: 'free' } | { kind: 'released'; head: string; last: boolean; keyHash: Buffer } | { kind: 'parked'; head: string; keyHash: Buffer };

/**
 * The parked keys of one consumer's queue (sequenced dead letters, ordering on). The database is
 * the truth (`parked_keys`, `parked_messages`, migration 13); this process keeps the set of
 * parked key hashes so that a delivery of a key that is not parked (nearly all of them) costs no
 * query. The set is loaded at start and again whenever the consumer takes partitions (a park
 * written by their previous owner), and kept current by this process's own parks and lifts; a
 * park found lifted by a release is dropped from it at the next delivery of its key.
 */
export class ParkedKeys {
  readonly #db: Queryable;
  readonly #source: string;
  readonly #keys: string;
  readonly #messages: string;
  readonly #parked = new Set<string>();
  #loading: Promise<void> = Promise.resolve();

  /** `source` is the consumer's queue, as its dead letters name it. */
  constructor(db: Queryable, schema: string, source: string) {
    this.#db = db;
    this.#source = source;
    const s = quoteIdentifier(schema);
    this.#keys = `${s}.parked_keys`;
    this.#messages = `${s}.parked_messages`;
  }

  /** The SHA-256 of a key (any key: NUL bytes and 100 KB keys fit the primary key this way). */
  static hash(key: string): Buffer {
    return createHash('sha256').update(key, 'utf8').digest();
  }

  get #executor(): Executor {
    return toExecutor(this.#db);
  }

  /**
   * Reads the queue's parks again. Deliveries checked meanwhile wait for it, so a partition just
   * taken is never handled against a set that lacks its previous owner's parks. Rejects on a
   * database failure (the next check tries again).
   */
  reload(): Promise<void> {
    const loading = this.#loading
      .catch(() => undefined)
      .then(async () => {
        const rows = await this.#executor.query<{ key_hash: Buffer }>(`SELECT key_hash FROM ${this.#keys} WHERE source OPERATOR(pg_catalog.=) $1`, [this.#source]);
        this.#parked.clear();
        for (const row of rows.rows) this.#parked.add(row.key_hash.toString('hex'));
      });
    this.#loading = loading;
    return loading;
  }

  /** Where a delivery of `key` with `messageId` stands (a query only when its key is in the set). */
  async check(key: string, messageId: string): Promise<ParkCheck> {
    // A load that failed is tried again here: a check never trusts a set it could not read.
    await this.#loading.catch(() => this.reload());
    const keyHash = ParkedKeys.hash(key);
    const hex = keyHash.toString('hex');
    if (!this.#parked.has(hex)) return { kind: 'free' };
    const rows = await this.#executor.query<{ head: string; released: string[] | null }>(
      `SELECT head_message_id::text AS head, released::text[] AS released FROM ${this.#keys}
        WHERE source OPERATOR(pg_catalog.=) $1 AND key_hash OPERATOR(pg_catalog.=) $2`,
      [this.#source, keyHash],
    );
    const park = rows.rows[0];
    if (park === undefined) {
      this.#parked.delete(hex);
      return { kind: 'free' };
    }
    const released = park.released ?? [];
    const at = released.indexOf(messageId);
    if (at >= 0) return { kind: 'released', head: park.head, last: at === released.length - 1, keyHash };
    if (messageId === park.head) return { kind: 'free' };
    return { kind: 'parked', head: park.head, keyHash };
  }

  /**
   * Parks `key` behind `head`, a message of it that just became a dead letter (before its
   * delivery is acked). A key parked behind another head already (a released message failed
   * again) now waits behind this one, and so do the messages that still waited behind the old one.
   */
  async park(key: string, head: string): Promise<void> {
    const keyHash = ParkedKeys.hash(key);
    await this.#executor.query(
      `WITH old AS (
         SELECT head_message_id FROM ${this.#keys} WHERE source OPERATOR(pg_catalog.=) $1 AND key_hash OPERATOR(pg_catalog.=) $2 FOR UPDATE
       ), moved AS (
         UPDATE ${this.#messages} m SET head_message_id = $3::pg_catalog.uuid FROM old
          WHERE m.source OPERATOR(pg_catalog.=) $1 AND m.head_message_id OPERATOR(pg_catalog.=) old.head_message_id
            AND old.head_message_id OPERATOR(pg_catalog.<>) $3::pg_catalog.uuid AND m.released_at IS NULL
       )
       INSERT INTO ${this.#keys} AS k (source, key_hash, head_message_id) VALUES ($1, $2, $3::pg_catalog.uuid)
       ON CONFLICT (source, key_hash) DO UPDATE SET head_message_id = excluded.head_message_id, released = NULL, parked_at = pg_catalog.now()`,
      [this.#source, keyHash, head],
    );
    this.#parked.add(keyHash.toString('hex'));
  }

  /**
   * Records that `messageId` waits behind `head` (before its delivery is acked). A message parked
   * again keeps its place (`seq`): its redelivery, or a released one parked behind a new head.
   */
  async parkBehind(head: string, messageId: string): Promise<void> {
    await this.#executor.query(
      `INSERT INTO ${this.#messages} (source, head_message_id, message_id) VALUES ($1, $2::pg_catalog.uuid, $3::pg_catalog.uuid)
       ON CONFLICT (source, message_id) DO UPDATE SET head_message_id = excluded.head_message_id, released_at = NULL`,
      [this.#source, head, messageId],
    );
  }

  /**
   * The last released message of a park was handled: lift the park, unless messages arrived
   * behind the head while the release was on its way (they wait, the park goes back to holding,
   * and the next replay or discard of the head releases them). True when lifted.
   */
  async lift(keyHash: Buffer, head: string): Promise<boolean> {
    const deleted = await this.#executor.query(
      `DELETE FROM ${this.#keys} k
        WHERE k.source OPERATOR(pg_catalog.=) $1 AND k.key_hash OPERATOR(pg_catalog.=) $2 AND k.head_message_id OPERATOR(pg_catalog.=) $3::pg_catalog.uuid
          AND k.released IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM ${this.#messages} m
                           WHERE m.source OPERATOR(pg_catalog.=) $1 AND m.head_message_id OPERATOR(pg_catalog.=) $3::pg_catalog.uuid AND m.released_at IS NULL)`,
      [this.#source, keyHash, head],
    );
    if (deleted.rowCount > 0) {
      this.#parked.delete(keyHash.toString('hex'));
      return true;
    }
    await this.#executor.query(
      `UPDATE ${this.#keys} SET released = NULL
        WHERE source OPERATOR(pg_catalog.=) $1 AND key_hash OPERATOR(pg_catalog.=) $2 AND head_message_id OPERATOR(pg_catalog.=) $3::pg_catalog.uuid AND released IS NOT NULL`,
      [this.#source, keyHash, head],
    );
    return false;
  }
}
