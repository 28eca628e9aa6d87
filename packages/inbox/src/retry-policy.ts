import { z } from 'zod/v4';
import { backoffDelay } from '@mailroom/core/internal';

/**
 * How a consumer retries a handler that failed with a transient error: the single source of each
 * field's type, default and description.
 */
export const retryPolicySchema = z.strictObject({
  /** Attempts in all, the first delivery included; after the last one the message is dead-lettered. Default: 5. */
  maxAttempts: z.number().int().min(1).max(100).default(5).meta({ description: 'attempts in all, the first delivery included; then a dead letter' }),
  /** Delay before the second attempt, in ms. Default: 1000. */
  initialDelayMs: z.number().int().min(1).default(1000).meta({ description: 'delay before the second attempt, in ms' }),
  /** Each further delay is the previous one times this. Default: 2. */
  multiplier: z.number().min(1).default(2).meta({ description: 'each further delay is the previous one times this' }),
  /** Longest delay, in ms. Default: 300000 (5 minutes). */
  maxDelayMs: z.number().int().min(1).default(300_000).meta({ description: 'longest delay, in ms' }),
});

/** How a consumer retries a handler that failed with a transient error. Every field has a default. */
export type RetryPolicy = z.input<typeof retryPolicySchema>;

/** A {@link RetryPolicy} with every default filled in. */
export type ResolvedRetryPolicy = z.output<typeof retryPolicySchema>;

/** The defaults of {@link RetryPolicy} (read from its schema). */
export const DEFAULT_RETRY_POLICY: ResolvedRetryPolicy = retryPolicySchema.parse({});

/** Fills in the defaults of a policy (values are validated where the consumer's options are). */
export function resolveRetryPolicy(policy: RetryPolicy = {}): ResolvedRetryPolicy {
  return { ...DEFAULT_RETRY_POLICY, ...Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined)) };
}

/**
 * The delay after failed attempt `n` (1-based), for n < maxAttempts. There is no jitter on
 * purpose: each distinct delay is one delay queue with a per-queue TTL (per-message TTLs expire
 * only at the head of a queue, so one long delay would hold up every shorter one behind it), and
 * jitter would turn every retry into a queue of its own.
 */
export function retryDelayMs(policy: ResolvedRetryPolicy, attempt: number): number {
  return backoffDelay({ initialMs: policy.initialDelayMs, maxMs: policy.maxDelayMs, multiplier: policy.multiplier }, attempt);
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
