import { describeError } from './errors.js';
import type { PgPoolClientLike, PgPoolLike } from './executor.js';

/** The part of a pg client's event API the checkout uses (a pg `PoolClient` fits). */
interface ErrorEmitter {
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
}

const canListen = (client: unknown): client is ErrorEmitter =>
  typeof (client as { on?: unknown }).on === 'function' && typeof (client as { removeListener?: unknown }).removeListener === 'function';

/** A pool client borrowed by the relay, guarded against `'error'` events while it is out. */
export interface CheckedOutClient {
  readonly client: PgPoolClientLike;
  /** True once the connection reported an error: it is destroyed at release, never reused. */
  readonly broken: boolean;
  /** Gives the client back (destroyed when `destroy` or when it broke). Idempotent. */
  release(destroy?: boolean): void;
}

/** The part of a pg Pool's event API the guard uses. */
interface AcquireEmitter {
  on(event: 'acquire', listener: (client: unknown) => void): unknown;
  removeListener(event: 'acquire', listener: (client: unknown) => void): unknown;
}

/** Errors clients reported between their acquisition and the checkout that took them. */
const earlyErrors = new WeakMap<object, Error>();
const early = new WeakMap<object, (error: Error) => void>();
const guarded = new Map<object, { count: number; onAcquire: (client: unknown) => void }>();

/**
 * Covers the moment pg leaves a client without any `'error'` listener: pg-pool removes its own
 * as it hands a client out, and a brand-new client is handed out from inside the socket's data
 * callback, where an error message that came in the same packet (a backend terminated right
 * after it connected) is emitted before anyone who awaits `pool.connect()` can listen. At the
 * pool's `acquire` event a listener is put on every client handed out; {@link checkOut} takes
 * it off its own clients, and it leaves any other client (the pool may be the application's) at
 * the next turn of the event loop. Returns the function that takes the guard off the pool.
 */
export function guardPool(pool: PgPoolLike): () => void {
  const emitter = pool as unknown as Partial<AcquireEmitter>;
  if (typeof emitter.on !== 'function' || typeof emitter.removeListener !== 'function') return () => undefined;
  let entry = guarded.get(pool);
  if (entry === undefined) {
    const onAcquire = (client: unknown): void => {
      if (!canListen(client)) return;
      const listener = (error: Error): void => void earlyErrors.set(client, error);
      early.set(client, listener);
      client.on('error', listener);
      setImmediate(() => {
        if (early.get(client) !== listener) return;
        early.delete(client);
        earlyErrors.delete(client);
        client.removeListener('error', listener);
      });
    };
    entry = { count: 0, onAcquire };
    guarded.set(pool, entry);
    emitter.on('acquire', onAcquire);
  }
  entry.count++;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    const e = guarded.get(pool);
    if (e === undefined || --e.count > 0) return;
    guarded.delete(pool);
    (pool as unknown as AcquireEmitter).removeListener('acquire', e.onAcquire);
  };
}

/**
 * Borrows a client from the pool with an `'error'` listener for the whole checkout. pg removes
 * the pool's own listener while a client is out, and a connection PostgreSQL terminates (a
 * restart, a failover, `pg_terminate_backend`) emits `'error'` on it, between queries or during
 * one: with nobody listening Node throws it and the process exits. Every client the relay
 * borrows goes through here (with {@link guardPool} on the pool); the error is reported to
 * `onError` and the query in flight, if any, fails on its own. The listener is removed only as the client goes back to the pool, which
 * then listens again.
 */
export async function checkOut(pool: PgPoolLike, onError: (error: Error) => void): Promise<CheckedOutClient> {
  const client = await pool.connect();
  let broken = false;
  let released = false;
  const listener = (error: Error): void => {
    broken = true;
    try {
      onError(error);
    } catch {
      // A reporter that throws must not turn a lost connection into a crash.
    }
  };
  const listening = canListen(client);
  if (listening) {
    client.on('error', listener);
    const guard = early.get(client);
    if (guard !== undefined) {
      early.delete(client);
      client.removeListener('error', guard);
    }
    const before = earlyErrors.get(client);
    if (before !== undefined) {
      earlyErrors.delete(client);
      listener(before);
    }
  }
  return {
    client,
    get broken() {
      return broken;
    },
    release(destroy = false) {
      if (released) return;
      released = true;
      const destroyed = destroy || broken;
      // Removed and handed back in one synchronous step: no event can fall between the two. A
      // client being destroyed keeps it: its socket may still report while it closes.
      if (listening && !destroyed) client.removeListener('error', listener);
      client.release(destroyed ? true : undefined);
    },
  };
}

/** A one-line description of a lost connection, for the logs. */
export function describeLostConnection(error: Error): string {
  return `database connection lost: ${describeError(error)}`;
}
