import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { describeError, type Logger } from '@mailroom/core';
import { notifyChannel } from './names.js';
import type { CheckedOutClient } from '@mailroom/core/internal';

/**
 * When the relay's loops look at the outbox again: at a NOTIFY (sent by `enqueue`, delivered by
 * PostgreSQL at commit), after the poll interval (the safety net for a lost NOTIFY), or at stop.
 * NOTIFY only nudges; it never carries rows, so a lost one costs one poll interval, not a message.
 */
export interface WakeUp {
  /** Aborted at stop: every wait of the relay ends with it. */
  readonly signal: AbortSignal;
  /** Resolves at stop (to race a wait that takes no signal, such as a broker connect). */
  readonly stopped: Promise<void>;
  /** Starts listening for NOTIFY on a connection of its own; retried after a loss until stop. */
  listen(): Promise<void>;
  /** Waits for a NOTIFY, `ms` or stop; a NOTIFY that came while the caller was busy counts. */
  idle(ms: number): Promise<void>;
  /** Waits `ms` or until stop (a failure backoff). */
  pause(ms: number): Promise<void>;
  /** Ends every wait now and from now on. */
  stop(): void;
  /** Releases the LISTEN connection (after the loops have finished). */
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
}

/** Creates the relay's wake-up; nothing listens until `listen()`. */
export function createWakeUp(options: WakeUpOptions): WakeUp {
  const controller = new AbortController();
  const signal = controller.signal;
  const stopped = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  let pending = false;
  let waiters: Array<() => void> = [];
  let listener: CheckedOutClient | undefined;

  const nudge = (): void => {
    pending = true;
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
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
        if (listener === lease) listener = undefined;
        lease?.release(true);
        retryListen();
      });
      if (signal.aborted) {
        lease.release();
        return;
      }
      // The structural pool type has no events; a pg client has them.
      (lease.client as unknown as pg.PoolClient).on('notification', nudge);
      await lease.client.query(`LISTEN "${notifyChannel(options.schema)}"`);
      if (signal.aborted || lost) {
        lease.release(true);
        return;
      }
      listener = lease;
      // Rows committed while nobody listened are picked up at once.
      nudge();
    } catch (error) {
      lease?.release(true);
      // A connection lost on the way has scheduled its own retry.
      if (lost) return;
      options.onFailure('listen', error);
      retryListen();
    }
  }

  return {
    signal,
    stopped,
    listen,
    async idle(ms) {
      if (signal.aborted) return;
      if (pending) {
        pending = false;
        return;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, ms);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        waiters.push(done);
      });
      pending = false;
    },
    async pause(ms) {
      await sleep(ms, undefined, { signal }).catch(() => undefined);
    },
    stop() {
      controller.abort();
      nudge();
    },
    close() {
      listener?.release(true);
      listener = undefined;
    },
  };
}
