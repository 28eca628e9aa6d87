import { MailroomError } from './errors.js';
import { checkOut, guardPool } from './pg-checkout.js';

/** A result as mailroom needs it from any driver. */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

/** The one database seam of mailroom: run a statement with bound values. */
export interface Executor {
  /** Runs one SQL statement with `$1…$n` parameters and returns its rows. */
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/** The part of a `pg` Client, PoolClient or Pool that mailroom uses. */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

/** The part of a `pg` Pool that mailroom uses. */
export interface PgPoolLike extends PgQueryable {
  connect(): Promise<PgPoolClientLike>;
  totalCount: number;
  idleCount: number;
}

/** The part of a `pg` PoolClient that mailroom uses. */
export interface PgPoolClientLike extends PgQueryable {
  release(destroy?: boolean | Error): void;
}

/** The part of a kysely `CompiledQuery` that mailroom builds. */
export interface KyselyCompiledQueryLike {
  readonly sql: string;
  readonly parameters: readonly unknown[];
}

/** The part of a kysely `Kysely` or `Transaction` that mailroom uses. */
export interface KyselyLike {
  // Typed with a `never` parameter so any kysely version's signature fits; see runKysely.
  executeQuery(query: never): Promise<{ rows: unknown[]; numAffectedRows?: bigint }>;
  readonly isTransaction: boolean;
  transaction(): { execute<T>(fn: (trx: KyselyLike) => Promise<T>): Promise<T> };
}

/** Anything mailroom accepts as a database handle: pg Pool, Client, PoolClient, Kysely, Transaction. */
export type Queryable = PgQueryable | KyselyLike;

/** True when `db` looks like a kysely `Kysely` or `Transaction`. */
export function isKysely(db: unknown): db is KyselyLike {
  return typeof db === 'object' && db !== null && typeof (db as { executeQuery?: unknown }).executeQuery === 'function';
}

/** True when `db` looks like a `pg` Pool (it hands out clients and counts them). */
export function isPgPool(db: unknown): db is PgPoolLike {
  return (
    typeof db === 'object' &&
    db !== null &&
    typeof (db as { connect?: unknown }).connect === 'function' &&
    typeof (db as { totalCount?: unknown }).totalCount === 'number' &&
    typeof (db as { release?: unknown }).release !== 'function'
  );
}

function isPgQueryable(db: unknown): db is PgQueryable {
  return typeof db === 'object' && db !== null && typeof (db as { query?: unknown }).query === 'function';
}

type RawCompiler = (sql: string, params: readonly unknown[]) => KyselyCompiledQueryLike;
let rawCompiler: Promise<RawCompiler> | undefined;

// kysely is an optional peer: it is loaded only when a caller hands us a kysely object, and its
// public CompiledQuery.raw builds the query so we depend on no internal node shape.
function loadRawCompiler(): Promise<RawCompiler> {
  rawCompiler ??= import('kysely').then(
    (k) => (sql, params) => k.CompiledQuery.raw(sql, [...params]),
    (error: unknown) => {
      rawCompiler = undefined;
      throw new MailroomError('UNSUPPORTED_EXECUTOR', 'A kysely object was passed but the kysely package cannot be loaded.', {
        cause: error,
      });
    },
  );
  return rawCompiler;
}

/** Wraps a pg or kysely handle in mailroom's {@link Executor} seam. */
export function toExecutor(db: Queryable): Executor {
  if (isKysely(db)) {
    return {
      async query<R>(text: string, params: readonly unknown[] = []) {
        const compile = await loadRawCompiler();
        const execute = db.executeQuery.bind(db) as (q: KyselyCompiledQueryLike) => Promise<{ rows: R[]; numAffectedRows?: bigint }>;
        const result = await execute(compile(text, params));
        return { rows: result.rows, rowCount: result.numAffectedRows === undefined ? result.rows.length : Number(result.numAffectedRows) };
      },
    };
  }
  if (isPgQueryable(db)) {
    return {
      async query<R>(text: string, params: readonly unknown[] = []) {
        // Without parameters pg uses the simple protocol, which runs multi-statement migrations
        // and answers with one result per statement: the last one is the caller's.
        const raw: unknown = params.length > 0 ? await db.query(text, params as unknown[]) : await db.query(text);
        const result = (Array.isArray(raw) ? raw[raw.length - 1] : raw) as { rows?: unknown[]; rowCount: number | null } | undefined;
        const rows = (result?.rows ?? []) as R[];
        return { rows, rowCount: result?.rowCount ?? rows.length };
      },
    };
  }
  throw new MailroomError(
    'UNSUPPORTED_EXECUTOR',
    'Expected a pg Pool, Client or PoolClient, or a kysely Kysely or Transaction.',
  );
}

/**
 * Runs `fn` in a transaction on `db`: a pool lends a client for it, a kysely instance opens one,
 * a client runs BEGIN/COMMIT itself. An already open kysely Transaction is used as it is.
 */
export async function inTransaction<T>(db: Queryable, fn: (tx: Executor) => Promise<T>): Promise<T> {
  if (isKysely(db)) {
    if (db.isTransaction) return fn(toExecutor(db));
    return db.transaction().execute((trx) => fn(toExecutor(trx)));
  }
  if (isPgPool(db)) {
    // The client keeps an 'error' listener while it is out: a backend terminated mid-transaction
    // must fail this call, not throw an unhandled 'error' event at the process.
    const unguard = guardPool(db);
    try {
      const out = await checkOut(db, () => undefined);
      try {
        const result = await runInTransaction(out.client, fn);
        out.release();
        return result;
      } catch (error) {
        out.release(true);
        throw error;
      }
    } finally {
      unguard();
    }
  }
  return runInTransaction(db, fn);
}

async function runInTransaction<T>(client: PgQueryable, fn: (tx: Executor) => Promise<T>): Promise<T> {
  const tx = toExecutor(client);
  await tx.query('BEGIN');
  try {
    const result = await fn(tx);
    await tx.query('COMMIT');
    return result;
  } catch (error) {
    await tx.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/**
 * Returns an executor for a caller's open transaction, refusing handles that cannot be one:
 * a pg Pool or a kysely instance outside `transaction()` would commit each statement alone.
 */
export function transactionExecutor(tx: Queryable, operation: string): Executor {
  if (isPgPool(tx) || (isKysely(tx) && !tx.isTransaction)) {
    throw new MailroomError(
      'UNSUPPORTED_EXECUTOR',
      `${operation} must run inside the caller's transaction: pass a pg client after BEGIN, or a kysely Transaction (db.transaction().execute(trx => …)).`,
    );
  }
  return toExecutor(tx);
}
