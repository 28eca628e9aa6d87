import { MailroomError, type KyselyLike, type PgPoolLike, type Queryable } from '@mailroom/core';
import { checkOut, isKysely, isPgPool, toExecutor } from '@mailroom/core/internal';
import { BrokenBatch, runBatchTransaction, type BatchEntry, type BatchSession } from './batch-transaction.js';
import { HandlerFailure } from './handler-failure.js';
import { runHandlerTransaction, runInKyselyTransaction, runOnPgClient, type HandlerTransaction, type TransactionOutcome } from './handler-transaction.js';

/**
 * Group commit: deliveries that arrive while the consumer's transactions are busy share the next
 * one. A delivery never waits for company: the first one starts a transaction at once, and that
 * transaction takes, when it has its connection, every delivery submitted until then (up to
 * `maxBatchSize`). No timer decides anything: a lone delivery is committed as soon as alone, and
 * a batch that holds one delivery runs the statements of a transaction of its own (no savepoint).
 */
export interface GroupCommitter<TTx> {
  /**
   * Runs one delivery's inbox insert, validation and handler in a shared transaction, each its
   * own unit (a savepoint); resolves once that transaction committed. Same contract as
   * `runHandlerTransaction`: rejects with a {@link HandlerFailure} for a failure of the message
   * or its handler, with anything else when mailroom's own database work failed.
   */
  submit(t: HandlerTransaction<TTx>): Promise<TransactionOutcome>;
}

/** A batch that broke because its connection died. */
class DeadBatch {
  constructor(readonly broken: BrokenBatch) {}
}

interface Waiting<TTx> extends BatchEntry<TTx> {
  resolve: (outcome: TransactionOutcome) => void;
  reject: (error: unknown) => void;
}

/** Creates a {@link GroupCommitter} on a pg Pool or a kysely instance. */
export function createGroupCommitter<TTx>(options: {
  db: Queryable;
  maxBatchSize: number;
  inboxTable: string;
  consumer: string;
  /** Told when a batch's shared transaction broke (with what broke it and how many deliveries it held). */
  onBroken: (error: unknown, size: number) => void;
}): GroupCommitter<TTx> {
  const { db, maxBatchSize, inboxTable, consumer, onBroken } = options;
  const pending: Array<Waiting<TTx>> = [];
  // A transaction waiting for its connection: it takes what arrives meanwhile.
  let forming = false;

  const take = (): Array<Waiting<TTx>> => {
    forming = false;
    const batch = pending.splice(0, maxBatchSize);
    // More than a batch was waiting: the next transaction starts at once.
    if (pending.length > 0) start();
    return batch;
  };

  const start = (): void => {
    forming = true;
    const run = isKysely(db) ? inKysely(db, take) : isPgPool(db) ? inPg(db, take) : unsupported(take);
    void run.then(({ batch, error }) => settle(batch, error));
  };

  const settle = async (batch: Array<Waiting<TTx>>, error: unknown): Promise<void> => {
    let cleanupError: unknown;
    const broken = error instanceof DeadBatch ? error.broken : error;
    if (broken instanceof BrokenBatch) onBroken(broken.original, batch.length);
    if (broken instanceof BrokenBatch && broken.orphans !== undefined) {
      // Before any of them runs again. When this fails too, they take the database-error path
      // (back to the queue after a pause); see the README for what a handler committing the
      // consumer's transaction then costs.
      try {
        await toExecutor(db).query(broken.orphans);
      } catch (thrown) {
        cleanupError = thrown;
      }
    }
    for (const entry of batch) {
      const result = entry.result;
      if (result?.kind === 'failed') entry.reject(result.failure);
      else if (cleanupError !== undefined && entry.started !== true) entry.reject(cleanupError);
      else if (error === undefined && result?.kind === 'done') entry.resolve(result.outcome);
      else if (error instanceof DeadBatch) entry.reject(error.broken.original);
      else if (error !== undefined && !(error instanceof BrokenBatch)) entry.reject(error);
      // The shared transaction broke (or left this one undecided): it runs again in one of its own.
      else runHandlerTransaction(entry.t).then(entry.resolve, entry.reject);
    }
  };

  return {
    submit(t) {
      return new Promise<TransactionOutcome>((resolve, reject) => {
        pending.push({ t, resolve, reject });
        if (!forming) start();
      });
    },
  };

  type Ran = { batch: Array<Waiting<TTx>>; error: unknown };

  async function inPg(pool: PgPoolLike, next: () => Array<Waiting<TTx>>): Promise<Ran> {
    let out;
    try {
      out = await checkOut(pool, () => undefined);
    } catch (error) {
      return { batch: next(), error };
    }
    const batch = next();
    // A batch of one: exactly the statements of a transaction of its own, on this connection.
    const [lone] = batch;
    if (batch.length === 1 && lone !== undefined) return { batch, error: await alone(lone, () => runOnPgClient(out, lone.t)) };
    const client = out.client;
    const session: BatchSession<TTx> = {
      handlerView: (onFirstQuery) => {
        const tx = watchQueries(client, onFirstQuery);
        return { tx: tx as TTx, db: toExecutor(tx), lazy: true };
      },
      begin: ['BEGIN'],
      commit: ['COMMIT'],
      async exec(statements) {
        // Simple protocol (no parameters): one round trip, one result per statement.
        const raw: unknown = await client.query(statements.join('; '));
        return (Array.isArray(raw) ? raw : [raw]) as Array<{ rows: Array<Record<string, unknown>> }>;
      },
    };
    try {
      await runBatchTransaction(session, batch, inboxTable, consumer);
      out.release();
      return { batch, error: undefined };
    } catch (error) {
      if (!(error instanceof BrokenBatch)) {
        out.release(true);
        return { batch, error };
      }
      // A connection that still answers (a handler ended the transaction, COMMIT was refused):
      // the undecided deliveries run again one by one. A dead one (a terminated backend, a reset
      // link): the database failed, not the messages; they take the database-error path, as a
      // transaction of their own would (back to the queue after a pause; in place with ordering).
      let alive = !out.broken;
      if (alive) alive = await client.query('ROLLBACK').then(() => true, () => false);
      out.release(!alive);
      return { batch, error: alive ? error : new DeadBatch(error) };
    }
  }

  async function inKysely(k: KyselyLike, next: () => Array<Waiting<TTx>>): Promise<Ran> {
    let batch: Array<Waiting<TTx>> | undefined;
    let lone: { entry: Waiting<TTx>; outcome?: TransactionOutcome } | undefined;
    try {
      await k.transaction().execute(async (trx) => {
        batch = next();
        if (batch.length === 1 && batch[0] !== undefined) {
          // A batch of one: the statements of a transaction of its own (no savepoint).
          lone = { entry: batch[0] };
          lone.outcome = await runInKyselyTransaction(trx, lone.entry.t);
          return;
        }
        const executor = toExecutor(trx);
        const session: BatchSession<TTx> = {
          handlerView: () => ({ tx: trx as TTx, db: executor, lazy: false }),
          begin: [],
          commit: [],
          async exec(statements) {
            const results = [];
            for (const statement of statements) results.push(await executor.query<Record<string, unknown>>(statement));
            return results;
          },
        };
        await runBatchTransaction(session, batch, inboxTable, consumer);
      });
      if (lone?.outcome !== undefined) lone.entry.result = { kind: 'done', outcome: lone.outcome };
      return { batch: batch ?? [], error: undefined };
    } catch (error) {
      if (batch === undefined) return { batch: next(), error };
      if (lone !== undefined) {
        // As runHandlerTransaction would end: a HandlerFailure is the delivery's, anything else the database's.
        if (!(error instanceof HandlerFailure)) return { batch, error };
        lone.entry.result = { kind: 'failed', failure: error };
        return { batch, error: undefined };
      }
      // A failed COMMIT leaves every delivery of the batch undecided.
      return { batch, error: error instanceof BrokenBatch ? error : batch.some((e) => e.result !== undefined) ? new BrokenBatch(error) : error };
    }
  }

  /**
   * Settles a batch of one the way its own transaction ended: handled or duplicate (`done`), or
   * failed with a {@link HandlerFailure}; anything else is returned, the batch's error (mailroom's
   * database work failed: the database-error path, as without group commit).
   */
  async function alone(entry: Waiting<TTx>, run: () => Promise<TransactionOutcome>): Promise<unknown> {
    try {
      entry.result = { kind: 'done', outcome: await run() };
      return undefined;
    } catch (error) {
      if (!(error instanceof HandlerFailure)) return error;
      entry.result = { kind: 'failed', failure: error };
      return undefined;
    }
  }

  async function unsupported(next: () => Array<Waiting<TTx>>): Promise<Ran> {
    await Promise.resolve();
    return { batch: next(), error: new MailroomError('UNSUPPORTED_EXECUTOR', 'The consumer needs a pg Pool or a kysely instance.') };
  }
}

/**
 * The pg client as a handler sees it: the same client, whose `query` calls `onFirstQuery` once,
 * synchronously, before the handler's first query is queued (pg runs a client's queries in the
 * order they were queued, so a statement queued there runs first).
 */
function watchQueries<C extends object>(client: C, onFirstQuery: () => void): C {
  let first = true;
  return new Proxy(client, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      if (property !== 'query') return (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        if (first) {
          first = false;
          onFirstQuery();
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
