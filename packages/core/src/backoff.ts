/** A capped exponential backoff: `initialMs × multiplier^(attempt-1)`, at most `maxMs`. */
export interface Backoff {
  /** The first delay, in ms. */
  initialMs: number;
  /** The longest delay, in ms. */
  maxMs: number;
  /** Each delay is the previous one times this. Default: 2. */
  multiplier?: number;
  /** A random share of the delay added or removed (0.2 = ±20 %), so failures that came together do not retry together. Default: 0. */
  jitter?: number;
}

/**
 * The delay before retry number `attempt` (from 1). Every backoff in mailroom — row retries in
 * the relay, reconnects, resubscriptions, failed relay batches and the consumer's delay queues —
 * is computed here. (p-retry retries one function call; mailroom's loops keep running and only
 * need the delay, so this is all of it.)
 */
export function backoffDelay(policy: Backoff, attempt: number): number {
  const multiplier = policy.multiplier ?? 2;
  const exponent = Math.min(Math.max(attempt - 1, 0), 60);
  const base = Math.min(policy.maxMs, policy.initialMs * multiplier ** exponent);
  const jitter = policy.jitter ?? 0;
  return Math.round(jitter > 0 ? base * (1 - jitter + Math.random() * 2 * jitter) : base);
}
