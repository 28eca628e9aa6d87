import { isMailroomError } from '@mailroom/core';
import { crashPoint, type Executor } from '@mailroom/core/internal';
import { HandlerFailure, isLockConflict } from './handler-failure.js';
import { ABORTED_TRANSACTION, byteaLiteral, handlerFailure, sqlLiteral, type HandlerTransaction, type TransactionOutcome } from './handler-transaction.js';

/**
 * The savepoint each delivery of a batch runs in (its inbox row and its handler). A handler that
 * releases it by name breaks nothing worse than its batch, which then runs again one by one.
 */
const SAVEPOINT = 'mailroom_delivery';

/** What became of one delivery of a batch. */
export type BatchResult =
  /** Its inbox row (or its duplicate verdict) is in the batch's transaction: settled once that commits. */
  | { kind: 'done'; outcome: TransactionOutcome }
  /** Its handler (or the contract) failed; its own work and its inbox row were rolled back to its savepoint. */
  | { kind: 'failed'; failure: HandlerFailure }
  /** The shared transaction broke around it, or its handler met a deadlock or serialization failure there: it runs again in a transaction of its own. */
  | { kind: 'alone' };

/** One delivery of a batch, and what became of it. */
export interface BatchEntry<TTx> {
  readonly t: HandlerTransaction<TTx>;
  result?: BatchResult;
  /** Set when its handler was called. */
  started?: boolean;
}

/** The connection a batch runs on. */
export interface BatchSession<TTx> {
  /**
   * What one handler gets as `tx` and `db`. With `onFirstQuery`, the session calls it before the
   * handler's first query reaches the connection (pg: a client whose `query` is watched), so a
   * handler that never queries costs no savepoint; without it (kysely), the batch opens one
   * before every handler.
   */
  handlerView(onFirstQuery: () => void): { tx: TTx; db: Executor; lazy: boolean };
  /** Runs statements in order (one round trip where the driver allows it); one result each. Rejects at the first that fails. */
  exec(statements: readonly string[]): Promise<Array<{ rows: Array<Record<string, unknown>> }>>;
  /** Sent before the first statement (`BEGIN`), or nothing when the driver opened the transaction. */
  readonly begin: readonly string[];
  /** Sent to commit (`COMMIT`), or nothing when the driver commits after the batch. */
  readonly commit: readonly string[];
}

/**
 * The shared transaction is in a state the batch cannot vouch for (a handler committed or rolled
 * it back, COMMIT failed, the connection died): every delivery not yet failed runs again alone.
 */
export class BrokenBatch extends Error {
  constructor(
    readonly original: unknown,
    /**
     * Inbox rows this batch inserted for deliveries whose handler never ran: a handler that
     * committed the transaction itself committed them too. This statement deletes them (those the
     * batch's transaction wrote, no other); run it, once that connection is gone, before those
     * deliveries run again.
     */
    readonly orphans: string | undefined = undefined,
  ) {
    super('The shared transaction of a batch broke.');
  }
}

/**
 * Runs several deliveries in one transaction, each its own unit, and commits it:
 * 1. `BEGIN` and the inbox rows of the whole batch in one insert (`ON CONFLICT DO NOTHING
 *    RETURNING`: what is not returned is a duplicate, also of an earlier delivery of the same batch);
 * 2. per new delivery: the contract's validation and the handler, inside a savepoint opened when
 *    the handler first queries (none for a handler that does not). A handler that throws is rolled
 *    back to it; one that leaves the transaction aborted (a failed statement it caught) is found by
 *    the release failing (SQLSTATE 25P02) and rolled back the same way. A failed delivery's inbox
 *    row is deleted right away, at the level of the batch, so no later rollback brings it back;
 * 3. `COMMIT`. Each entry's `result` says what it became; none is acked here.
 * Throws {@link BrokenBatch} when the transaction can no longer be trusted (a handler committed or
 * rolled it back, COMMIT failed, the connection died); any other error when the first round trip
 * failed (nothing happened).
 */
export async function runBatchTransaction<TTx>(s: BatchSession<TTx>, entries: ReadonlyArray<BatchEntry<TTx>>, inboxTable: string, consumer: string): Promise<void> {
  // In id order: concurrent batches then take their inbox rows' locks in one order and cannot
  // deadlock on them (a redelivered duplicate can sit in two batches at once).
  const values = [...entries]
    .sort((a, b) => (a.t.message.messageId < b.t.message.messageId ? -1 : a.t.message.messageId > b.t.message.messageId ? 1 : 0))
    .map(({ t }) => `(${sqlLiteral(consumer)}, ${sqlLiteral(t.message.messageId)}, ${byteaLiteral(t.payloadHash)})`)
    .join(', ');
  const begun = await s.exec([...s.begin, `INSERT INTO ${inboxTable} (consumer, message_id, payload_hash) VALUES ${values} ON CONFLICT DO NOTHING RETURNING message_id, xmin`]);
  const rows = begun.at(-1)?.rows ?? [];
  const inserted = new Set(rows.map((row) => String(row.message_id)));
  const xid = rows[0] === undefined ? undefined : String(rows[0].xmin);
  const fresh: Array<BatchEntry<TTx>> = [];
  const duplicates: Array<BatchEntry<TTx>> = [];
  for (const entry of entries) {
    // The first delivery of an id in the batch owns its row; a later one is its duplicate.
    if (inserted.delete(entry.t.message.messageId)) fresh.push(entry);
    else duplicates.push(entry);
  }
  const sql = new BatchSql(inboxTable, consumer);
  try {
    if (duplicates.length > 0) {
      const [found] = await s.exec([sql.storedHashes(duplicates.map((d) => d.t.message.messageId))]);
      const hashes = new Map<string, string>();
      for (const row of found?.rows ?? []) if (Buffer.isBuffer(row.payload_hash)) hashes.set(String(row.message_id), row.payload_hash.toString('hex'));
      for (const d of duplicates) d.result = { kind: 'done', outcome: { kind: 'duplicate', storedHash: hashes.get(d.t.message.messageId) ?? null } };
    }
    for (const entry of fresh) await runOne(s, sql, entry);
    crashPoint('inbox.batch.before-commit');
    if (s.commit.length > 0) await s.exec(s.commit);
  } catch (error) {
    // Handlers that never ran: their rows, committed by a handler that committed the transaction itself, must go.
    const unrun = fresh.filter((e) => e.started !== true).map((e) => e.t.message.messageId);
    throw new BrokenBatch(error instanceof BrokenBatch ? error.original : error, unrun.length > 0 && xid !== undefined ? sql.deleteOrphans(unrun, xid) : undefined);
  }
}

/** One new delivery of a batch: validation, handler, its savepoint settled. Throws when the transaction broke. */
async function runOne<TTx>(s: BatchSession<TTx>, sql: BatchSql, entry: BatchEntry<TTx>): Promise<void> {
  const { t } = entry;
  let payload: unknown;
  try {
    payload = await t.binding.contract.decode(t.body, t.message.version);
  } catch (error) {
    await s.exec([sql.deleteRow(t.message.messageId)]);
    entry.result = { kind: 'failed', failure: new HandlerFailure(error, isMailroomError(error, 'INVALID_PAYLOAD') ? 'invalidPayload' : 'transient') };
    return;
  }
  let opened: Promise<unknown> | undefined;
  const view = s.handlerView(() => {
    // Queued ahead of the handler's first query on the same connection; its outcome is read below.
    opened = s.exec([`SAVEPOINT ${SAVEPOINT}`]).then(
      () => undefined,
      (error: unknown) => ({ error }),
    );
  });
  if (!view.lazy) {
    await s.exec([`SAVEPOINT ${SAVEPOINT}`]);
    opened = Promise.resolve(undefined);
  }
  let failure: HandlerFailure | undefined;
  entry.started = true;
  try {
    await t.binding.handle({ payload, tx: view.tx, db: view.db, message: t.message, signal: t.signal });
  } catch (error) {
    failure = handlerFailure(error, t.signal);
  }
  if (opened === undefined) {
    // The handler never queried: nothing of it is in the transaction.
    if (failure === undefined) {
      crashPoint('inbox.before-commit');
      entry.result = { kind: 'done', outcome: { kind: 'handled' } };
      return;
    }
    await s.exec([sql.deleteRow(t.message.messageId)]);
    entry.result = { kind: 'failed', failure };
    return;
  }
  const savepoint = (await opened) as { error: unknown } | undefined;
  if (savepoint !== undefined) throw new BrokenBatch(savepoint.error);
  if (failure === undefined) {
    crashPoint('inbox.before-commit');
    try {
      await s.exec([`RELEASE SAVEPOINT ${SAVEPOINT}`]);
      entry.result = { kind: 'done', outcome: { kind: 'handled' } };
      return;
    } catch (error) {
      // Any failure but "the transaction is aborted" means it is not what the batch made it.
      if (sqlState(error) !== '25P02') throw new BrokenBatch(error);
      failure = new HandlerFailure(ABORTED_TRANSACTION, 'transient');
    }
  }
  await s.exec([`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`, `RELEASE SAVEPOINT ${SAVEPOINT}`, sql.deleteRow(t.message.messageId)]);
  // A deadlock or serialization failure is the batch's doing (its neighbours' locks are held until
  // the batch commits), not the handler's: it runs again alone, without spending an attempt.
  entry.result = isLockConflict(failure) ? { kind: 'alone' } : { kind: 'failed', failure };
}

/** The batch's own statements (simple protocol: values inlined, checked; operators schema-qualified). */
class BatchSql {
  readonly #table: string;
  readonly #consumer: string;

  constructor(inboxTable: string, consumer: string) {
    this.#table = inboxTable;
    this.#consumer = sqlLiteral(consumer);
  }

  /** The payload hashes kept by the rows duplicates ran into (their own batch's rows included). */
  storedHashes(ids: readonly string[]): string {
    return `SELECT message_id, payload_hash FROM ${this.#table} WHERE consumer OPERATOR(pg_catalog.=) ${this.#consumer} AND message_id OPERATOR(pg_catalog.=) ANY (${uuidArray(ids)})`;
  }

  /** Deletes one failed delivery's row. */
  deleteRow(id: string): string {
    return `DELETE FROM ${this.#table} WHERE consumer OPERATOR(pg_catalog.=) ${this.#consumer} AND message_id OPERATOR(pg_catalog.=) ${sqlLiteral(id)}::pg_catalog.uuid`;
  }

  /** Deletes rows the batch's own transaction (`xid`) wrote, and only those: never a row another delivery wrote since. */
  deleteOrphans(ids: readonly string[], xid: string): string {
    if (!/^[0-9]+$/.test(xid)) throw new Error(`unexpected xid ${xid}`);
    return `DELETE FROM ${this.#table} WHERE consumer OPERATOR(pg_catalog.=) ${this.#consumer} AND message_id OPERATOR(pg_catalog.=) ANY (${uuidArray(ids)}) AND xmin OPERATOR(pg_catalog.=) '${xid}'::pg_catalog.xid`;
  }
}

// Message ids are checked, lower-cased UUIDs (see delivery validation): only [0-9a-f-] reaches the text.
function uuidArray(ids: readonly string[]): string {
  return `${sqlLiteral(`{${[...new Set(ids)].join(',')}}`)}::pg_catalog.uuid[]`;
}

function sqlState(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}
