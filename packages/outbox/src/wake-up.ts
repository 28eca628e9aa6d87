import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { describeError, type Logger } from '@mailroom/core';
import { RELAY_ASLEEP_LOCK_CLASS, notifyChannel } from './names.js';
import type { CheckedOutClient } from '@mailroom/core/internal';

/**
 * NOTIFYs in a row that found every worker busy (no worker went to sleep in between) after which
 * the relay counts as under load and lets its "asleep" lock go, so producers stop notifying.
 */
const HOT_NUDGES = 4;
/**
 * How long a relay going to sleep waits for the transactions that were in progress when it
 * registered (some may have inserted rows without seeing the registration). A longer one (a
 * producer that inserted and keeps its transaction open) is then left to the poll interval.
 */
const SETTLE_BOUND_MS = 1000;
/** Under load, a batch of fewer rows than this waits {@link GATHER_MS} before the next poll. */
const GATHER_BELOW = 32;
const GATHER_MS = 2;

/**
 * When the relay's loops look at the outbox again: at a NOTIFY, after the poll interval (the
 * safety net for a lost NOTIFY), or at stop. NOTIFY only nudges; it never carries rows, so a lost
 * one costs one poll interval, not a message.
 *
 * Producers notify only while a relay sleeps (migration 9's insert trigger; see the README,
 * "Waking the relay"): before its workers sleep, the relay takes the "asleep" advisory lock in
 * SHARE mode on its LISTEN connection, waits for the transactions that were in progress at that
 * moment (they may have inserted before they could see the lock) and polls once more. It keeps
 * the lock while its workers find time to sleep, and lets it go under sustained load (NOTIFYs keep
 * coming while every worker is busy): then one worker polls on while polls find rows (small
 * batches wait {@link GATHER_MS} first), and nobody needs a NOTIFY; the last worker to find
 * nothing registers again before it sleeps.
 * Each NOTIFY wakes one sleeping worker; another joins when a batch comes back full.
 */
export interface WakeUp {
  /** Aborted at stop: every wait of the relay ends with it. */
  readonly signal: AbortSignal;
  /** Resolves at stop (to race a wait that takes no signal, such as a broker connect). */
  readonly stopped: Promise<void>;
  /** Starts listening for NOTIFY on a connection of its own; retried after a loss until stop. */
  listen(): Promise<void>;
  /**
   * Called by a worker after a batch that was not full (`claimed` rows): returns when it should
   * poll again. That is at once when a NOTIFY came while it was busy, when the relay is not
   * registered as asleep and the batch found rows (under load), or after registering (the poll
   * that makes the registration safe); otherwise it sleeps until a NOTIFY, `ms` or stop.
   */
  idle(ms: number, claimed?: number): Promise<void>;
  /** A batch came back full: wakes one more sleeping worker to help (if any sleeps). */
  join(): void;
  /** A worker loop starts (it counts as busy until it calls `idle`); `leave()` when it ends. */
  enter(): void;
  /** A worker loop has ended. */
  leave(): void;
  /** Waits `ms` or until stop (a failure backoff). */
  pause(ms: number): Promise<void>;
  /** Ends every wait now and from now on. */
  stop(): void;
  /** Releases the LISTEN connection (after the loops have finished); its lock goes with it. */
  close(): void;
}

/** Options of {@link createWakeUp}. */
export interface WakeUpOptions {
  /** Borrows the LISTEN connection, guarded for its whole checkout; `onError` hears its loss. */
  checkOut(onError: (error: Error) => void): Promise<CheckedOutClient>;
  schema: string;
  /** Also the delay before a lost LISTEN connection is opened again. */
  pollIntervalMs: number;
  log: Logger;
  /** Reports a failed LISTEN (it is retried). */
  onFailure(stage: string, error: unknown): void;
  /**
   * A row was scheduled due before every other one (migration 11's trigger, payload
   * {@link SCHEDULED_PAYLOAD}), or LISTEN (re)started and such a NOTIFY may have been missed: the
   * scheduled mover looks at its next due time again. Such a NOTIFY wakes no worker.
   */
  onScheduled?(): void;
}

/** The payload of migration 11's NOTIFY: a new earliest scheduled row, not a new outbox row. */
export const SCHEDULED_PAYLOAD = 'scheduled';

/** The `xip` text array of a one-row result (null when no transaction was listed). */
function xipOf(rows: readonly unknown[]): string[] {
  return (rows[0] as { xip?: string[] | null } | undefined)?.xip ?? [];
}

/** Creates the relay's wake-up; nothing listens until `listen()`. */
export function createWakeUp(options: WakeUpOptions): WakeUp {
  const controller = new AbortController();
  const signal = controller.signal;
  const stopped = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  let pending = false;
  let waiters: Array<() => void> = [];
  let listener: CheckedOutClient | undefined;
  // Holds the "asleep" lock on `listener` (a session lock: it ends with the connection).
  let registered = false;
  let registering: Promise<void> | undefined;
  // NOTIFYs in a row that found no sleeping worker.
  let hot = 0;
  let workers = 0;
  // Workers in `idle` (asleep, or waiting for another worker's registration).
  let resting = 0;

  const wakeOne = (): boolean => {
    const wake = waiters.shift();
    wake?.();
    return wake !== undefined;
  };
  // A NOTIFY wakes one sleeping worker; when none sleeps, the next worker to finish looks again.
  const nudge = (): void => {
    if (wakeOne()) return;
    pending = true;
    if (registered && ++hot >= HOT_NUDGES) unregister();
  };

  const retryListen = (): void => {
    if (!signal.aborted) setTimeout(() => void listen(), options.pollIntervalMs).unref();
  };

  async function listen(): Promise<void> {
    let lost = false;
    let lease: CheckedOutClient | undefined;
    try {
      lease = await options.checkOut((error) => {
        if (lost) return;
        lost = true;
        options.log.warn('LISTEN connection lost; polling until it is back', { error: describeError(error) });
        if (listener === lease) {
          listener = undefined;
          registered = false;
        }
        lease?.release(true);
        retryListen();
      });
      if (signal.aborted) {
        lease.release();
        return;
      }
      // The structural pool type has no events; a pg client has them.
      (lease.client as unknown as pg.PoolClient).on('notification', (message) => {
        if (message.payload === SCHEDULED_PAYLOAD) options.onScheduled?.();
        else nudge();
      });
      // The connection is destroyed at release: these settings never reach another pool user.
      // A lock wait longer than a second means something odd holds the "asleep" lock: poll.
      // Its only commits with an id (the mark taken when going to sleep) need no WAL flush.
      await lease.client.query(`SET lock_timeout = '1s'; SET synchronous_commit = off; LISTEN "${notifyChannel(options.schema)}"`);
      if (signal.aborted || lost) {
        lease.release(true);
        return;
      }
      listener = lease;
      registered = false;
      // Rows committed (or scheduled earlier) while nobody listened are picked up at once.
      nudge();
      options.onScheduled?.();
    } catch (error) {
      lease?.release(true);
      // A connection lost on the way has scheduled its own retry.
      if (lost) return;
      options.onFailure('listen', error);
      retryListen();
    }
  }

  /**
   * Takes the "asleep" lock, then waits (bounded) for every transaction in progress at that
   * moment: one of them may have inserted rows and tested the lock before it was taken. Those
   * that commit later were seen by the caller's next poll; the others notify.
   */
  async function register(): Promise<void> {
    const lease = listener;
    if (lease === undefined) return;
    try {
      await lease.client.query('SELECT pg_catalog.pg_advisory_lock_shared($1::pg_catalog.int4, pg_catalog.hashtext($2::pg_catalog.text))', [
        RELAY_ASLEEP_LOCK_CLASS,
        options.schema,
      ]);
      if (listener !== lease) return;
      registered = true;
      hot = 0;
      options.log.debug('relay: asleep (producers notify)');
      // An id taken after the lock: every producer that tested the lock before has a smaller one.
      // (A snapshot alone would miss the newest: ids at or above its xmax are not in its xip list.)
      const mark = await lease.client.query('SELECT pg_catalog.pg_current_xact_id()::pg_catalog.text AS n');
      const n = (mark.rows[0] as { n: string }).n;
      // A later statement, after that id completed: every transaction below it still running is listed.
      const first = await lease.client.query(
        `SELECT pg_catalog.array_agg(x)::pg_catalog.text[] AS xip FROM pg_catalog.pg_snapshot_xip(pg_catalog.pg_current_snapshot()) AS x
          WHERE x OPERATOR(pg_catalog.<) $1::pg_catalog.xid8`,
        [n],
      );
      let xip = xipOf(first.rows);
      const deadline = Date.now() + SETTLE_BOUND_MS;
      let delay = 1;
      while (xip.length > 0 && !signal.aborted && listener === lease) {
        if (Date.now() >= deadline) {
          options.log.debug(`relay: ${xip.length} transaction(s) still open ${SETTLE_BOUND_MS} ms after going to sleep; the poll interval covers them`);
          break;
        }
        await sleep(delay, undefined, { signal }).catch(() => undefined);
        delay = Math.min(delay * 2, 20);
        // Still running: in the xip list of a snapshot taken now.
        const left = await lease.client.query(
          `SELECT pg_catalog.array_agg(x)::pg_catalog.text[] AS xip FROM pg_catalog.unnest($1::pg_catalog.xid8[]) AS x
            WHERE NOT pg_catalog.pg_visible_in_snapshot(x, pg_catalog.pg_current_snapshot())`,
          [xip],
        );
        xip = xipOf(left.rows);
      }
    } catch (error) {
      // The connection's own error listener handles a loss; a lock timeout just means: poll.
      options.log.warn(`relay: could not register as asleep (polling meanwhile): ${describeError(error)}`);
    }
  }

  /** Lets the "asleep" lock go: producers stop notifying. */
  function unregister(): void {
    const lease = listener;
    if (!registered || lease === undefined) return;
    registered = false;
    options.log.debug('relay: under load (producers stop notifying)');
    lease.client
      .query('SELECT pg_catalog.pg_advisory_unlock_shared($1::pg_catalog.int4, pg_catalog.hashtext($2::pg_catalog.text))', [RELAY_ASLEEP_LOCK_CLASS, options.schema])
      // A lock left held only costs spare NOTIFYs; a lost connection is handled by its listener.
      .catch((error: unknown) => options.log.warn(`relay: could not unregister as asleep: ${describeError(error)}`));
  }

  return {
    signal,
    stopped,
    listen,
    async idle(ms, claimed = 0) {
      if (signal.aborted) return;
      if (pending) {
        pending = false;
        return;
      }
      resting++;
      try {
        if (listener !== undefined && !registered && workers - resting === 0) {
          // The last busy worker: nobody else will look, so producers must be told to notify.
          // Under load (this batch found rows) it polls on instead, and nobody needs to notify.
          if (claimed > 0) {
            // A small batch: let rows gather a moment, so each batch carries more of them.
            if (claimed < GATHER_BELOW) await sleep(GATHER_MS, undefined, { signal }).catch(() => undefined);
            return;
          }
          if (registering === undefined) {
            registering = register().finally(() => (registering = undefined));
            await registering;
            // One more poll: rows of transactions that committed before the lock was seen.
            return;
          }
        }
        // Another worker registers and polls once more: this one can sleep.
        if (registering !== undefined) await registering;
        hot = 0;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, ms);
          function done(): void {
            clearTimeout(timer);
            waiters = waiters.filter((w) => w !== done);
            resolve();
          }
          waiters.push(done);
        });
        pending = false;
      } finally {
        resting--;
      }
    },
    join() {
      wakeOne();
    },
    enter() {
      workers++;
    },
    leave() {
      workers--;
    },
    async pause(ms) {
      await sleep(ms, undefined, { signal }).catch(() => undefined);
    },
    stop() {
      controller.abort();
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake();
    },
    close() {
      listener?.release(true);
      listener = undefined;
      registered = false;
    },
  };
}
