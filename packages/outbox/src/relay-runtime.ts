import type { AmqpConnection, Logger, PgPoolLike } from '@mailroom/core';
import { backoffDelay } from '@mailroom/core/internal';
import type { Settlement } from './batch-settlement.js';
import type { ConfirmPublisher } from './publisher.js';
import type { ResolvedRelayOptions } from './relay-options.js';
import type { RelaySql } from './relay-sql.js';
import type { WakeUp } from './wake-up.js';

/**
 * What the relay's loops and batches share: its options, links, statements and wake-up, and the
 * callbacks through which they report back to the handle (readiness, failures, committed work).
 */
export interface RelayRuntime {
  readonly options: ResolvedRelayOptions;
  readonly log: Logger;
  readonly sql: RelaySql;
  readonly pool: PgPoolLike;
  readonly amqp: AmqpConnection;
  readonly wake: WakeUp;
  /** Whether the last batch reached the database without error (part of readiness). */
  setHealthy(healthy: boolean): void;
  /** Reports a failure that the loop retries. */
  failure(stage: string, error: unknown): void;
  /** A batch committed: count it, announce it. Called only after COMMIT returned. */
  committed(settlement: Settlement, durationMs: number): void;
  /** A batch rolled back. */
  rolledBack(): void;
}

/** Waits for a confirm channel (the broker may be down); resolves undefined at stop. */
export async function channelOrStop(runtime: RelayRuntime, publisher: ConfirmPublisher): Promise<unknown> {
  if (runtime.wake.signal.aborted) return undefined;
  return Promise.race([publisher.channel(), runtime.wake.stopped.then(() => undefined)]);
}

/**
 * Waits after a failed batch: the poll interval, doubling per failure in a row, at most 32 poll
 * intervals or 10 s; ends early at stop.
 */
export async function backOffAfterFailure(runtime: RelayRuntime, failures: number): Promise<void> {
  runtime.setHealthy(false);
  const { pollIntervalMs } = runtime.options;
  await runtime.wake.pause(backoffDelay({ initialMs: pollIntervalMs, maxMs: Math.min(pollIntervalMs * 32, 10_000) }, failures));
}
