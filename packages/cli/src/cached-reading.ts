import { setTimeout as sleep } from 'node:timers/promises';

/** How often and how long a metrics gauge may query the database. */
export interface CachedReadingOptions {
  /** A reading is reused for this long, in ms: scrapes and gauges share one query. */
  cacheMs: number;
  /** A scrape waits this long for the query, in ms; a database that hangs must not hang /metrics. */
  timeoutMs: number;
}

const TIMED_OUT = Symbol('timed out');

/**
 * Wraps a database reading for a gauge: one query per `cacheMs` however many scrapes ask, shared
 * while in flight, and given up after `timeoutMs` (the reader then rejects and the registry leaves
 * the gauge out of that scrape; the query goes on and fills the cache if it answers).
 */
export function cachedReading<T>(read: () => Promise<T>, options: CachedReadingOptions): () => Promise<T> {
  let cached: { at: number; value: T } | undefined;
  let inFlight: Promise<T> | undefined;
  return async () => {
    if (cached !== undefined && Date.now() - cached.at < options.cacheMs) return cached.value;
    inFlight ??= read().then(
      (value) => {
        cached = { at: Date.now(), value };
        inFlight = undefined;
        return value;
      },
      (error: unknown) => {
        inFlight = undefined;
        throw error;
      },
    );
    inFlight.catch(() => undefined);
    const winner = await Promise.race([inFlight, sleep(options.timeoutMs, TIMED_OUT, { ref: false })]);
    if (winner === TIMED_OUT) throw new Error(`the reading took more than ${options.timeoutMs} ms`);
    return winner;
  };
}
