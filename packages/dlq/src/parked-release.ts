import type { Executor } from '@mailroom/core/internal';
import type { DeadLetter } from './dead-letter.js';
import { DEAD_LETTER_COLUMNS, toDeadLetter, type DeadLetterRow } from './dead-letter-row.js';
import type { StoreContext } from './store-context.js';

/** A dead letter that may be the head of a parked key: its queue and message id. */
export interface ParkHead {
  source: string;
  messageId: string;
}

/** The parked messages a release sends back, in the order they arrived behind their head. */
export interface ParkRelease {
  /** The head, as given. */
  head: ParkHead;
  /** The parked dead letters sent back, in order (replayable ones, up to the first that is not). */
  released: DeadLetter[];
  /** Parked messages left parked: not stored by the sink yet, or not replayable (with why). */
  held: Array<{ messageId: string; why: string }>;
}

/**
 * Which of `deadLetters` wait behind a head whose park still holds (not released): a replay of
 * one of them alone would overtake its head, so it is released with the head, never by itself.
 * Returns message id → head message id.
 */
export async function heldBehindHead(tx: Executor, ctx: StoreContext, deadLetters: readonly DeadLetter[]): Promise<Map<string, string>> {
  const held = new Map<string, string>();
  if (deadLetters.length === 0) return held;
  const rows = await tx.query<{ message_id: string; head: string }>(
    `SELECT m.message_id::text AS message_id, m.head_message_id::text AS head
       FROM ${ctx.quotedSchema}.parked_messages m
       JOIN ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.uuid[])) AS s(source, message_id)
         ON m.source OPERATOR(pg_catalog.=) s.source AND m.message_id OPERATOR(pg_catalog.=) s.message_id
      WHERE m.released_at IS NULL
        AND EXISTS (SELECT 1 FROM ${ctx.quotedSchema}.parked_keys k
                     WHERE k.source OPERATOR(pg_catalog.=) m.source AND k.head_message_id OPERATOR(pg_catalog.=) m.head_message_id AND k.released IS NULL)`,
    [deadLetters.map((d) => d.source), deadLetters.map((d) => d.messageId)],
  );
  for (const row of rows.rows) held.set(row.message_id, row.head);
  return held;
}

/**
 * Releases the keys parked behind `heads` (being replayed or discarded in the caller's
 * transaction): locks each park that still holds, reads its parked messages in arrival order and
 * their dead letters, and marks them released, the park `released` with the ids that go back
 * (the head first when it is replayed). The consumer keeps the key parked until it has handled
 * the last of those ids, so a message of the key that was already on its way cannot overtake
 * them. A park with nothing to send (a discarded head, nothing behind it) is lifted at once.
 * The caller enqueues the returned dead letters, after their head, in one `enqueue`.
 */
export async function releaseParked(tx: Executor, ctx: StoreContext, heads: readonly ParkHead[], mode: 'replay' | 'discard'): Promise<ParkRelease[]> {
  const s = ctx.quotedSchema;
  // Run even for no heads: every grant a release needs is exercised by every replay and discard.
  const parks = await tx.query<{ source: string; head: string }>(
    `SELECT k.source, k.head_message_id::text AS head FROM ${s}.parked_keys k
       JOIN ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.uuid[])) AS h(source, head)
         ON k.source OPERATOR(pg_catalog.=) h.source AND k.head_message_id OPERATOR(pg_catalog.=) h.head
      WHERE k.released IS NULL
      ORDER BY k.source, k.head_message_id
      FOR UPDATE OF k`,
    [heads.map((h) => h.source), heads.map((h) => h.messageId)],
  );
  const out: ParkRelease[] = [];
  const lifted: ParkHead[] = [];
  for (const park of parks.rows) {
    const head: ParkHead = { source: park.source, messageId: park.head };
    const behind = await tx.query<{ message_id: string }>(
      `SELECT message_id::text AS message_id FROM ${s}.parked_messages
        WHERE source OPERATOR(pg_catalog.=) $1 AND head_message_id OPERATOR(pg_catalog.=) $2::pg_catalog.uuid AND released_at IS NULL
        ORDER BY seq`,
      [head.source, head.messageId],
    );
    const ids = behind.rows.map((r) => r.message_id);
    const stored = await tx.query<DeadLetterRow>(
      `SELECT ${DEAD_LETTER_COLUMNS} FROM ${ctx.table} WHERE source OPERATOR(pg_catalog.=) $1 AND message_id OPERATOR(pg_catalog.=) ANY($2::pg_catalog.uuid[]) FOR UPDATE`,
      [head.source, ids],
    );
    const byId = new Map(stored.rows.map((r) => [r.message_id, toDeadLetter(r)]));
    const released: DeadLetter[] = [];
    const held: ParkRelease['held'] = [];
    for (const id of ids) {
      const dl = byId.get(id);
      // Order is the point: past the first message that cannot go, none behind it goes either.
      if (held.length === 0 && dl !== undefined && dl.replayTarget.replayable) {
        released.push(dl);
        continue;
      }
      const why = held.length > 0 ? 'an earlier parked message of its key is held' : dl === undefined ? 'the dead-letter sink has not stored it yet' : dl.replayTarget.replayable ? '' : dl.replayTarget.why;
      held.push({ messageId: id, why });
    }
    const releasedIds = [...(mode === 'replay' ? [head.messageId] : []), ...released.map((d) => d.messageId)];
    if (releasedIds.length === 0 && held.length === 0) lifted.push(head);
    else if (releasedIds.length > 0) {
      await tx.query(
        `UPDATE ${s}.parked_keys SET released = $3::pg_catalog.uuid[] WHERE source OPERATOR(pg_catalog.=) $1 AND head_message_id OPERATOR(pg_catalog.=) $2::pg_catalog.uuid`,
        [head.source, head.messageId, releasedIds],
      );
    }
    if (released.length > 0) {
      await tx.query(`UPDATE ${ctx.table} SET replayed_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) ANY($1::pg_catalog.int8[])`, [released.map((d) => d.id)]);
    }
    out.push({ head, released, held });
  }
  await tx.query(
    `UPDATE ${s}.parked_messages m SET released_at = pg_catalog.now()
       FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.uuid[])) AS r(source, message_id)
      WHERE m.source OPERATOR(pg_catalog.=) r.source AND m.message_id OPERATOR(pg_catalog.=) r.message_id`,
    [out.flatMap((r) => r.released.map((d) => d.source)), out.flatMap((r) => r.released.map((d) => d.messageId))],
  );
  await tx.query(
    `DELETE FROM ${s}.parked_keys k
      USING ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.uuid[])) AS h(source, head)
      WHERE k.source OPERATOR(pg_catalog.=) h.source AND k.head_message_id OPERATOR(pg_catalog.=) h.head`,
    [lifted.map((h) => h.source), lifted.map((h) => h.messageId)],
  );
  return out;
}

/**
 * Discarded parked messages no longer wait: marked released. A park whose head is gone (discarded
 * before, its parked messages held back then: not replayable) and behind which nothing waits any
 * more is lifted: its key flows again.
 */
export async function forgetParked(tx: Executor, ctx: StoreContext, discarded: readonly ParkHead[]): Promise<void> {
  const s = ctx.quotedSchema;
  const forgotten = await tx.query<{ source: string; head: string }>(
    `UPDATE ${s}.parked_messages m SET released_at = pg_catalog.now()
       FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.uuid[])) AS r(source, message_id)
      WHERE m.source OPERATOR(pg_catalog.=) r.source AND m.message_id OPERATOR(pg_catalog.=) r.message_id AND m.released_at IS NULL
      RETURNING m.source, m.head_message_id::text AS head`,
    [discarded.map((d) => d.source), discarded.map((d) => d.messageId)],
  );
  await tx.query(
    `DELETE FROM ${s}.parked_keys k
      USING ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.uuid[])) AS h(source, head)
      WHERE k.source OPERATOR(pg_catalog.=) h.source AND k.head_message_id OPERATOR(pg_catalog.=) h.head AND k.released IS NULL
        AND NOT EXISTS (SELECT 1 FROM ${ctx.table} d WHERE d.source OPERATOR(pg_catalog.=) k.source AND d.message_id OPERATOR(pg_catalog.=) k.head_message_id)
        AND NOT EXISTS (SELECT 1 FROM ${s}.parked_messages m
                         WHERE m.source OPERATOR(pg_catalog.=) k.source AND m.head_message_id OPERATOR(pg_catalog.=) k.head_message_id AND m.released_at IS NULL)`,
    [forgotten.rows.map((r) => r.source), forgotten.rows.map((r) => r.head)],
  );
}

/** Which head each of `deadLetters` is parked behind (message id → head message id), while its park holds. */
export async function parkedBehind(db: Executor, ctx: StoreContext, deadLetters: readonly DeadLetter[]): Promise<Map<string, string>> {
  return heldBehindHead(db, ctx, deadLetters);
}

/** The dead letters parked behind a head, in the order they arrived (released ones included). */
export async function parkedMessages(db: Executor, ctx: StoreContext, head: ParkHead): Promise<DeadLetter[]> {
  const rows = await db.query<DeadLetterRow>(
    `SELECT ${DEAD_LETTER_COLUMNS} FROM (
       SELECT d.*, m.seq AS parked_seq FROM ${ctx.quotedSchema}.parked_messages m
         JOIN ${ctx.table} d ON d.source OPERATOR(pg_catalog.=) m.source AND d.message_id OPERATOR(pg_catalog.=) m.message_id
        WHERE m.source OPERATOR(pg_catalog.=) $1 AND m.head_message_id OPERATOR(pg_catalog.=) $2::pg_catalog.uuid) parked
      ORDER BY parked_seq`,
    [head.source, head.messageId],
  );
  return rows.rows.map(toDeadLetter);
}
