import { MailroomError, isMailroomError, type KyselyLike, type PgPoolLike, type Queryable } from '@mailroom/core';
import { crashPoint, isKysely, isPgPool, toExecutor, type Executor } from '@mailroom/core/internal';
import type { HandlerBinding, MessageMetadata } from './handler.js';
import { HandlerFailure } from './handler-failure.js';
import { isNonRetryableError } from './non-retryable-error.js';

/** What one handler transaction did: ran the handler and committed, or found a duplicate. */
export type TransactionOutcome = 'handled' | 'duplicate';

/** One delivery's handler transaction. */
export interface HandlerTransaction<TTx> {
  /** A pg Pool or a kysely instance. */
  db: Queryable;
  /** The quoted `<schema>.inbox` table. */
  inboxTable: string;
  /** The consumer's name (validated: see consumer-options.ts), the inbox key with the message id. */
  consumer: string;
  /** The handler of the message type. */
  binding: HandlerBinding<TTx>;
  /** The parsed body, validated by the contract inside the transaction. */
  body: unknown;
  /** About the delivery (its `messageId` is a checked, lower-cased UUID). */
  message: MessageMetadata;
  /** Aborted when stop() gives up waiting. */
  signal: AbortSignal;
}

type Work<TTx> = (tx: TTx, db: Executor, alreadyInserted?: boolean) => Promise<TransactionOutcome>;

const ABORTED_TRANSACTION = new Error(
  'The handler transaction was aborted by an earlier error (caught inside the handler?), so nothing was committed.',
);

function sqlLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * Runs one delivery in one transaction: the inbox insert keyed by (consumer, message id), the
 * contract's validation and the handler, then COMMIT. A conflicting insert is a duplicate: the
 * transaction commits nothing. A failure of the message or the handler throws a
 * {@link HandlerFailure}; anything else thrown is mailroom's own database work failing.
 */
export async function runHandlerTransaction<TTx>(t: HandlerTransaction<TTx>): Promise<TransactionOutcome> {
  const work: Work<TTx> = async (tx, db, alreadyInserted) => {
    const inserted =
      alreadyInserted ??
      (await db.query(`INSERT INTO ${t.inboxTable} (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [t.consumer, t.message.messageId]))
        .rowCount > 0;
    // Nothing was written: committing this transaction commits nothing.
    if (!inserted) return 'duplicate';
    let payload: unknown;
    try {
      payload = t.binding.contract.parse(t.body);
    } catch (error) {
      throw new HandlerFailure(error, isMailroomError(error, 'INVALID_PAYLOAD') ? 'invalidPayload' : 'transient');
    }
    try {
      await t.binding.handle({ payload, tx, db, message: t.message, signal: t.signal });
    } catch (error) {
      // A handler that gave up because stop() aborted it did not fail: no attempt is used.
      throw new HandlerFailure(error, t.signal.aborted ? 'aborted' : isNonRetryableError(error) ? 'nonRetryable' : 'transient');
    }
    crashPoint('inbox.before-commit');
    return 'handled';
  };
  const db = t.db;
  if (isKysely(db)) return inKyselyTransaction(db, work);
  if (isPgPool(db)) return inPgTransaction(db, t, work);
  throw new MailroomError('UNSUPPORTED_EXECUTOR', 'The consumer needs a pg Pool or a kysely instance.');
}

async function inKyselyTransaction<TTx>(db: KyselyLike, work: Work<TTx>): Promise<TransactionOutcome> {
  return db.transaction().execute(async (trx) => {
    const executor = toExecutor(trx);
    const outcome = await work(trx as TTx, executor);
    // kysely does not tell a COMMIT from the ROLLBACK PostgreSQL answers for an aborted
    // transaction; this query fails in one, so the message is retried rather than acked.
    if (outcome === 'handled') {
      await executor.query('SELECT 1').catch(() => {
        throw new HandlerFailure(ABORTED_TRANSACTION, 'transient');
      });
    }
    return outcome;
  });
}

async function inPgTransaction<TTx>(db: PgPoolLike, t: HandlerTransaction<TTx>, work: Work<TTx>): Promise<TransactionOutcome> {
  const client = await db.connect();
  let healthy = true;
  // pg emits 'error' on a checked-out client whose connection dies between queries (a
  // terminated backend); with no listener that is an uncaught exception. The pending query
  // fails anyway, so the listener only marks the client for destruction.
  const events = client as unknown as { on?: (e: 'error', l: (error: unknown) => void) => void; off?: (e: 'error', l: (error: unknown) => void) => void };
  const onError = (): void => {
    healthy = false;
  };
  events.on?.('error', onError);
  try {
    const executor = toExecutor(client);
    // BEGIN and the inbox insert in one round trip (simple protocol, so values are inlined:
    // the consumer name is validated against its pattern and the message id is a checked UUID).
    const begun = await executor.query(
      `BEGIN; INSERT INTO ${t.inboxTable} (consumer, message_id) VALUES (${sqlLiteral(t.consumer)}, ${sqlLiteral(t.message.messageId)}) ON CONFLICT DO NOTHING`,
    );
    let result: TransactionOutcome;
    try {
      result = await work(client as TTx, executor, begun.rowCount > 0);
    } catch (error) {
      await executor.query('ROLLBACK').catch(() => {
        healthy = false;
      });
      // The handler failed because its connection died (a terminated backend, a reset link):
      // the database, not the message, is the problem. No attempt is used, and with ordering
      // no retry through a delay queue lets later messages of the key overtake this one.
      if (!healthy && error instanceof HandlerFailure && error.kind === 'transient') throw error.original;
      throw error;
    }
    // COMMIT of a transaction that an error aborted (one the handler caught and swallowed)
    // answers ROLLBACK without failing: acking then would lose the message.
    const committed = (await client.query('COMMIT')) as { command?: unknown };
    if (committed.command === 'ROLLBACK') throw new HandlerFailure(ABORTED_TRANSACTION, 'transient');
    return result;
  } catch (error) {
    if (!(error instanceof HandlerFailure)) healthy = false;
    throw error;
  } finally {
    // A client whose connection failed mid-transaction is destroyed, not handed out again.
    events.off?.('error', onError);
    client.release(!healthy);
  }
}
