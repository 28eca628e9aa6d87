import { MailroomError, describeError, isMailroomError, type KyselyLike, type Queryable } from '@mailroom/core';
import { checkOut, crashPoint, isKysely, isPgPool, toExecutor, type CheckedOutClient, type Executor } from '@mailroom/core/internal';
import type { HandlerBinding, MessageMetadata } from './handler.js';
import { HandlerFailure, refusedCharacterState } from './handler-failure.js';
import { isNonRetryableError } from './non-retryable-error.js';

/**
 * What one handler transaction did: ran the handler and committed, or found a duplicate (with the
 * payload hash its inbox row keeps; null for a row written before migration 6).
 */
export type TransactionOutcome = { kind: 'handled' } | { kind: 'duplicate'; storedHash: string | null };

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
  /** The body's hash (hex SHA-256, see payload-hash.ts), kept in the inbox row. */
  payloadHash: string;
  /** About the delivery (its `messageId` is a checked, lower-cased UUID). */
  message: MessageMetadata;
  /** Aborted when stop() gives up waiting. */
  signal: AbortSignal;
}

/** What a delivery whose handler left its transaction aborted (a failed statement it caught) fails with. */
export const ABORTED_TRANSACTION = new Error(
  'The handler transaction was aborted by an earlier error (caught inside the handler?), so nothing was committed.',
);

/**
 * A SQL string literal (quotes doubled), for the few values inlined into simple-protocol
 * statements: a consumer name (letters, digits and . _ : - only, checked by the options) and
 * checked UUIDs. Never pass free text: with `standard_conforming_strings` off a backslash escapes.
 */
export function sqlLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * A bytea literal from hex digits (checked: only [0-9a-f] reaches the SQL text); the E'' form
 * reads the same whatever standard_conforming_strings is.
 */
export function byteaLiteral(hex: string): string {
  if (!/^[0-9a-f]*$/.test(hex)) throw new MailroomError('INVALID_MESSAGE', 'A payload hash must be hex digits.');
  return `E'\\\\x${hex}'`;
}

/**
 * The payload hash of an existing inbox row. Operators are schema-qualified so a function or
 * operator planted earlier in the connection's search_path is never called.
 */
async function storedHash(db: Executor, t: HandlerTransaction<unknown>): Promise<string | null> {
  const result = await db.query<{ payload_hash: unknown }>(
    `SELECT payload_hash FROM ${t.inboxTable} WHERE consumer OPERATOR(pg_catalog.=) $1 AND message_id OPERATOR(pg_catalog.=) $2::pg_catalog.uuid`,
    [t.consumer, t.message.messageId],
  );
  const value = result.rows[0]?.payload_hash;
  return Buffer.isBuffer(value) ? value.toString('hex') : null;
}

/** How a handler's error routes the delivery. */
export function handlerFailure(error: unknown, signal: AbortSignal): HandlerFailure {
  // A handler that gave up because stop() aborted it did not fail: no attempt is used.
  if (signal.aborted) return new HandlerFailure(error, 'aborted');
  if (isNonRetryableError(error)) return new HandlerFailure(error, 'nonRetryable');
  const refused = refusedCharacterState(error);
  if (refused !== undefined) {
    const why = new Error(`PostgreSQL refused a character of what the handler stored (SQLSTATE ${refused}; NUL in a string of the payload?): ${describeError(error)}`);
    return new HandlerFailure(why, 'invalidPayload');
  }
  return new HandlerFailure(error, 'transient');
}

/**
 * Runs one delivery in one transaction: the inbox insert keyed by (consumer, message id), the
 * contract's validation and the handler, then COMMIT. A conflicting insert is a duplicate: the
 * transaction commits nothing. A failure of the message or the handler throws a
 * {@link HandlerFailure}; anything else thrown is mailroom's own database work failing.
 */
export async function runHandlerTransaction<TTx>(t: HandlerTransaction<TTx>): Promise<TransactionOutcome> {
  const db = t.db;
  if (isKysely(db)) return db.transaction().execute((trx) => runInKyselyTransaction(trx, t));
  if (isPgPool(db)) {
    // The checkout keeps an 'error' listener on the client until it is released (with the pool
    // guarded at consumer start, from the moment pg hands it out): a backend terminated between
    // queries marks it broken instead of throwing an uncaught 'error' at the process.
    return runOnPgClient(await checkOut(db, () => undefined), t);
  }
  throw new MailroomError('UNSUPPORTED_EXECUTOR', 'The consumer needs a pg Pool or a kysely instance.');
}

/** What validating a body by its contract gave: the payload, or the failure the delivery fails with. */
type Decoded = { ok: true; payload: unknown } | { ok: false; failure: HandlerFailure };

/**
 * Validates the body by the contract (and upcasts it), as a promise that never rejects. Started
 * while the inbox insert is in flight, so its work overlaps that round trip; its result counts
 * only for a delivery that turns out not to be a duplicate.
 */
function decodeBody(t: HandlerTransaction<unknown>): Promise<Decoded> {
  const failed = (error: unknown): Decoded => ({ ok: false, failure: new HandlerFailure(error, isMailroomError(error, 'INVALID_PAYLOAD') ? 'invalidPayload' : 'transient') });
  try {
    return Promise.resolve(t.binding.contract.decode(t.body, t.message.version)).then((payload): Decoded => ({ ok: true, payload }), failed);
  } catch (error) {
    return Promise.resolve(failed(error));
  }
}

/**
 * The inbox insert (unless done: `alreadyInserted` says what it did), the contract's validation
 * (`decoding` when it was started already) and the handler, in the open transaction.
 */
async function handleInTransaction<TTx>(t: HandlerTransaction<TTx>, tx: TTx, db: Executor, alreadyInserted?: boolean, decoding?: Promise<Decoded>): Promise<TransactionOutcome> {
  const inserted =
    alreadyInserted ??
    (
      await db.query(`INSERT INTO ${t.inboxTable} (consumer, message_id, payload_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [
        t.consumer,
        t.message.messageId,
        Buffer.from(t.payloadHash, 'hex'),
      ])
    ).rowCount > 0;
  // Nothing was written: committing this transaction commits nothing. Reading the first one's
  // hash costs a round trip on duplicates only. (A duplicate is one whatever its body holds.)
  if (!inserted) return { kind: 'duplicate', storedHash: await storedHash(db, t as HandlerTransaction<unknown>) };
  const decoded = await (decoding ?? decodeBody(t as HandlerTransaction<unknown>));
  if (!decoded.ok) throw decoded.failure;
  const payload = decoded.payload;
  try {
    await t.binding.handle({ payload, tx, db, message: t.message, signal: t.signal });
  } catch (error) {
    throw handlerFailure(error, t.signal);
  }
  crashPoint('inbox.before-commit');
  return { kind: 'handled' };
}

/**
 * One delivery's work inside a kysely transaction the caller opened (and commits once this
 * resolves, or rolls back when it throws): what {@link runHandlerTransaction} runs there. Group
 * commit runs a batch of one this way.
 */
export async function runInKyselyTransaction<TTx>(trx: KyselyLike, t: HandlerTransaction<TTx>): Promise<TransactionOutcome> {
  const executor = toExecutor(trx);
  const outcome = await handleInTransaction(t, trx as TTx, executor);
  // kysely does not tell a COMMIT from the ROLLBACK PostgreSQL answers for an aborted
  // transaction; this query fails in one, so the message is retried rather than acked.
  if (outcome.kind === 'handled') {
    await executor.query('SELECT 1').catch(() => {
      throw new HandlerFailure(ABORTED_TRANSACTION, 'transient');
    });
  }
  return outcome;
}

/**
 * The pg client's transaction status as of its last answer: 'I' idle (no transaction), 'T' in
 * one, 'E' in a failed one; undefined on a pg without `getTransactionStatus` (before 8.20).
 */
function transactionStatus(client: unknown): string | undefined {
  const get = (client as { getTransactionStatus?: () => string | null }).getTransactionStatus;
  return typeof get === 'function' ? (get.call(client) ?? undefined) : undefined;
}

/**
 * A handler ran `COMMIT` or `ROLLBACK` on the consumer's `tx`, and the connection is out of any
 * transaction. Its inbox row tells which: kept (a COMMIT) means the message is handled, its
 * redelivery a duplicate, so it is acked as handled; gone (a ROLLBACK) means the handler's writes
 * before it were undone and those after it kept on their own, which no retry can make whole: the
 * message goes to the dead letters at once, with an error that says why, instead of being acked
 * with no inbox row.
 */
async function endedByHandler<TTx>(executor: Executor, t: HandlerTransaction<TTx>, result: TransactionOutcome): Promise<TransactionOutcome> {
  const kept = await executor.query(`SELECT 1 FROM ${t.inboxTable} WHERE consumer OPERATOR(pg_catalog.=) ${sqlLiteral(t.consumer)} AND message_id OPERATOR(pg_catalog.=) ${sqlLiteral(t.message.messageId)}::pg_catalog.uuid`);
  if (kept.rowCount > 0) return result;
  throw new HandlerFailure(
    new Error(
      `The handler ended the consumer's transaction (ROLLBACK on tx): the inbox row of message ${t.message.messageId} was undone with what the handler wrote before, and what it wrote after was committed on its own. Never end tx in a handler; throw to roll back.`,
    ),
    'nonRetryable',
  );
}

/**
 * One delivery's transaction on a pg client already checked out (what
 * {@link runHandlerTransaction} runs once it has one): `BEGIN` and the inbox insert in one round
 * trip, the handler, `COMMIT`. Releases the client, destroying it when its connection failed.
 * Group commit runs a batch of one this way: a lone delivery costs no savepoint.
 */
export async function runOnPgClient<TTx>(out: CheckedOutClient, t: HandlerTransaction<TTx>): Promise<TransactionOutcome> {
  const client = out.client;
  let healthy = true;
  try {
    const executor = toExecutor(client);
    // BEGIN and the inbox insert in one round trip (simple protocol, so values are inlined:
    // the consumer name is validated against its pattern, the message id is a checked UUID and
    // the hash is hex digits). No function or operator is named, so search_path plays no part.
    const begun = executor.query(
      `BEGIN; INSERT INTO ${t.inboxTable} (consumer, message_id, payload_hash) VALUES (${sqlLiteral(t.consumer)}, ${sqlLiteral(t.message.messageId)}, ${byteaLiteral(t.payloadHash)}) ON CONFLICT DO NOTHING`,
    );
    // The contract's validation runs while that round trip is in flight (a lone delivery's
    // latency does not wait for both); it counts only once the insert says "not a duplicate".
    const decoding = decodeBody(t as HandlerTransaction<unknown>);
    const inserted = (await begun).rowCount > 0;
    let result: TransactionOutcome;
    try {
      result = await handleInTransaction(t, client as TTx, executor, inserted, decoding);
    } catch (error) {
      await executor.query('ROLLBACK').catch(() => {
        healthy = false;
      });
      // The handler failed because its connection died (a terminated backend, a reset link):
      // the database, not the message, is the problem. No attempt is used, and with ordering
      // no retry through a delay queue lets later messages of the key overtake this one.
      if ((!healthy || out.broken) && error instanceof HandlerFailure && error.kind === 'transient') throw error.original;
      throw error;
    }
    // The handler ended the transaction itself (COMMIT or ROLLBACK on tx): what it wrote since
    // went out in autocommit, and after a ROLLBACK the inbox row is gone. Acking that as handled
    // would lose the message's exactly-once record; see endedByHandler.
    if (transactionStatus(client) === 'I') return await endedByHandler(executor, t, result);
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
    out.release(!healthy);
  }
}
