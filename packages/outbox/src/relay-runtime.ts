import { setTimeout as sleep } from 'node:timers/promises';
import type { AmqpConnection, Logger, PgPoolLike } from '@mailroom/core';
import { backoffDelay } from '@mailroom/core/internal';
import type { Settlement } from './batch-settlement.js';
import { LinkFailure, type RelayLink } from './link-health.js';
import type { CheckedOutClient } from '@mailroom/core/internal';
import type { ConfirmPublisher } from './publisher.js';
import type { ResolvedRelayOptions } from './relay-options.js';
import type { RelaySql } from './relay-sql.js';
import type { WakeUp } from './wake-up.js';

/**
 * What the relay's loops and batches share: its options, links, statements and wake-up, and the
 * callbacks through which they report back to the handle (link state, failures, committed work).
 * None of the callbacks throws.
 */
export interface RelayRuntime {
  readonly options: ResolvedRelayOptions;
  readonly log: Logger;
  readonly sql: RelaySql;
  readonly pool: PgPoolLike;
  readonly amqp: AmqpConnection;
  readonly wake: WakeUp;
  /** Borrows a pool client with an `'error'` listener for the whole checkout (core's pg-checkout.ts). */
  checkOut(): Promise<CheckedOutClient>;
  /** A link worked (a batch reached PostgreSQL; a channel was had). */
  linkUp(link: RelayLink): void;
  /** A link failed outside a batch (the broker unreachable for a while, say). */
  linkDown(link: RelayLink, error: string): void;
  /** A batch (or getting ready for one) failed; the loop backs off and tries again. */
  batchFailed(stage: string, error: unknown): void;
  /** Reports a failure that is retried and is no batch's (LISTEN). */
  failure(stage: string, error: unknown): void;
  /** A batch committed: count it, announce it. Called only after COMMIT returned. */
  committed(settlement: Settlement, durationMs: number): void;
}

/** How long the loops wait for a broker channel before they report RabbitMQ down, in ms. */
export const BROKER_GRACE_MS = 2_000;

/**
 * Waits for a confirm channel (the broker may be down; after {@link BROKER_GRACE_MS} without
 * one, RabbitMQ is reported down, once per outage); resolves undefined at stop.
 */
export async function channelOrStop(runtime: RelayRuntime, publisher: ConfirmPublisher): Promise<unknown> {
  const { signal } = runtime.wake;
  if (signal.aborted) return undefined;
  const channel = publisher.channel().catch((error: unknown) => {
    throw new LinkFailure('rabbitmq', error);
  });
  if (runtime.amqp.connected) {
    // The common case, once per batch: no grace timer.
    const open = await untilAborted(channel, signal);
    if (open !== undefined) runtime.linkUp('rabbitmq');
    return open;
  }
  const slow = Symbol('slow');
  const first = await untilAborted(Promise.race([channel, sleep(BROKER_GRACE_MS, slow, { ref: false })]), signal);
  if (first !== slow) {
    if (first !== undefined) runtime.linkUp('rabbitmq');
    return first;
  }
  runtime.linkDown('rabbitmq', `no connection to ${runtime.amqp.displayUrl} for ${BROKER_GRACE_MS} ms (reconnecting)`);
  const later = await untilAborted(channel, signal);
  if (later !== undefined) runtime.linkUp('rabbitmq');
  return later;
}

/**
 * `promise`, or undefined as soon as `signal` aborts. The abort listener is removed once
 * `promise` settles: nothing stays attached to a long-lived promise or signal. (Racing the
 * relay's `stopped` promise instead would leave one reaction on it per call, held until stop:
 * one per batch, a leak of about half a kilobyte per batch in a relay that runs for days.)
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.finally(() => signal.removeEventListener('abort', onAbort)).then(resolve, reject);
  });
}

/**
 * Waits after a failed batch: the poll interval, doubling per failure in a row, at most 32 poll
 * intervals or 10 s; ends early at stop.
 */
export async function backOffAfterFailure(runtime: RelayRuntime, failures: number): Promise<void> {
  const { pollIntervalMs } = runtime.options;
  await runtime.wake.pause(backoffDelay({ initialMs: pollIntervalMs, maxMs: Math.min(pollIntervalMs * 32, 10_000) }, failures));
}
