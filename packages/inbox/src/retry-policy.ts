/** How a consumer retries a handler that failed with a transient error. */
export interface RetryPolicy {
  /** Attempts in all, the first delivery included; after the last one the message is dead-lettered. Default: 5. */
  maxAttempts?: number;
  /** Delay before the second attempt, in ms. Default: 1000. */
  initialDelayMs?: number;
  /** Each further delay is the previous one times this. Default: 2. */
  multiplier?: number;
  /** Longest delay, in ms. Default: 300000 (5 minutes). */
  maxDelayMs?: number;
}

/** The defaults of {@link RetryPolicy}. */
export const DEFAULT_RETRY_POLICY: Required<RetryPolicy> = { maxAttempts: 5, initialDelayMs: 1000, multiplier: 2, maxDelayMs: 300_000 };

/** Fills in the defaults of a policy. */
export function resolveRetryPolicy(policy: RetryPolicy = {}): Required<RetryPolicy> {
  return { ...DEFAULT_RETRY_POLICY, ...Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined)) };
}

/**
 * The delay after failed attempt `n` (1-based), for n < maxAttempts. There is no jitter on
 * purpose: each distinct delay is one delay queue with a per-queue TTL (per-message TTLs expire
 * only at the head of a queue, so one long delay would hold up every shorter one behind it).
 */
export function retryDelayMs(policy: Required<RetryPolicy>, attempt: number): number {
  return Math.round(Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.multiplier ** (attempt - 1)));
}

/** Every delay of the policy, in order: one per retry. */
export function retryDelays(policy: RetryPolicy = {}): number[] {
  const resolved = resolveRetryPolicy(policy);
  return Array.from({ length: Math.max(0, resolved.maxAttempts - 1) }, (_, i) => retryDelayMs(resolved, i + 1));
}

/** The retry horizon: how long after its first delivery a message can still be attempted. */
export function retryHorizonMs(policy: RetryPolicy = {}): number {
  return retryDelays(policy).reduce((a, b) => a + b, 0);
}
