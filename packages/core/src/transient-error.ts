import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from './backoff.js';
import { describeError } from './errors.js';

// SQLSTATEs of a connection that went away or a server that is not (yet) taking work:
// class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect
// now), 53300 (too many connections).
const TRANSIENT_SQLSTATE = /^(08...|57P0[123]|53300)$/;
const TRANSIENT_NODE = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
const TRANSIENT_TEXT = /Connection terminated|connection timeout|timeout expired|Client has encountered a connection error/i;

/**
 * True when a database error says the connection or the server failed for now (a reset link, a
 * terminated backend, a restarting server), not that the request was wrong: trying again later
 * may work. Wrong passwords, missing tables and missing grants are not transient.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (TRANSIENT_SQLSTATE.test(code) || TRANSIENT_NODE.has(code))) return true;
  const cause = (error as { cause?: unknown }).cause;
  if (cause !== undefined && cause !== error && isTransientDatabaseError(cause)) return true;
  return error instanceof Error && TRANSIENT_TEXT.test(error.message);
}

/** Options of {@link retryTransient}. */
export interface RetryTransientOptions {
  /** Give up (rethrow the last error) after this long, in ms. Default: 30000. */
  withinMs?: number;
  /** Stops retrying at once when aborted (the last error is rethrown). */
  signal?: AbortSignal;
  /** Called before each wait, for a log line. */
  onRetry?: (error: unknown, delayMs: number) => void;
}

/**
 * Runs `fn`, and runs it again with backoff while it fails with a transient database error
 * (see {@link isTransientDatabaseError}), for at most `withinMs`. A component's `start()` uses it
 * for its start-up queries: a link reset or a terminated backend during start-up is waited out,
 * while a permanent error (no table, no grant, a wrong password) still fails at once.
 */
export async function retryTransient<T>(fn: () => Promise<T>, options: RetryTransientOptions = {}): Promise<T> {
  const deadline = Date.now() + (options.withinMs ?? 30_000);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      const delay = backoffDelay({ initialMs: 100, maxMs: 2000, jitter: 0.2 }, attempt);
      if (!isTransientDatabaseError(error) || options.signal?.aborted === true || Date.now() + delay > deadline) throw error;
      try {
        options.onRetry?.(error, delay);
      } catch {
        // A log callback that throws changes nothing.
      }
      // A ref'd timer: while start() waits, nothing else may be keeping the process alive.
      await sleep(delay);
    }
  }
}

/** A one-line description of a transient failure for a log line. */
export function describeTransient(error: unknown, delayMs: number): string {
  return `${describeError(error)}; trying again in ${delayMs} ms`;
}
