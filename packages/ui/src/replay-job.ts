import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from '@mailroom/core';
import type { DeadLetterFilter, DeadLetterStore } from '@mailroom/dlq';

/** Where a bulk replay is. */
export type ReplayJobState = 'running' | 'done' | 'cancelled' | 'failed';

/** A bulk replay of a filtered set, as its progress page shows it. */
export interface ReplayJobStatus {
  id: string;
  state: ReplayJobState;
  /** Who started it. */
  actor: string;
  /** The filter, as the operator wrote it (for the page). */
  description: string;
  /** How many dead letters matched when it started (the preview's count). */
  total: number;
  /** How many of them it has looked at so far (replayed or skipped). */
  examined: number;
  /** How many went back into the outbox. */
  replayed: number;
  /** How many were left alone, and the first reasons. */
  skipped: number;
  skippedReasons: string[];
  /** The rate limit, messages per second. */
  ratePerSecond: number;
  startedAt: string;
  finishedAt: string | null;
  /** Why it stopped, when it failed (a refusal of the retention check, a lost database). */
  error: string | null;
}

/** A running bulk replay: its status, and a way to stop it between two batches. */
export interface ReplayJob {
  readonly status: ReplayJobStatus;
  /** Stops after the batch in flight (each batch is its own transaction: nothing half done). */
  cancel(): void;
  /** Resolves when the job has stopped, however. */
  readonly finished: Promise<void>;
}

/** What a bulk replay is asked to do. */
export interface ReplayJobRequest {
  filter: DeadLetterFilter;
  description: string;
  actor: string;
  force: boolean;
  ratePerSecond: number;
  total: number;
}

/**
 * Replays every dead letter of a filtered set in short transactions of at most `batch` rows,
 * through `store.replay({ filter, limit, afterId })`, waiting between batches so that no more
 * than `ratePerSecond` messages go back into the outbox per second. Cancelling stops between
 * batches; each batch is audited as one replay.
 */
export function startReplayJob(store: DeadLetterStore, request: ReplayJobRequest): ReplayJob {
  const stop = new AbortController();
  const status: ReplayJobStatus = {
    id: randomBytes(8).toString('hex'),
    state: 'running',
    actor: request.actor,
    description: request.description,
    total: request.total,
    examined: 0,
    replayed: 0,
    skipped: 0,
    skippedReasons: [],
    ratePerSecond: request.ratePerSecond,
    startedAt: new Date().toISOString(),
    finishedAt: null,
    error: null,
  };
  // A batch is at most a second's worth of the rate (and 500 rows), so the rate holds within a second.
  const batch = Math.max(1, Math.min(500, Math.floor(request.ratePerSecond)));
  const run = async (): Promise<void> => {
    let afterId: string | undefined;
    try {
      for (;;) {
        if (stop.signal.aborted) {
          status.state = 'cancelled';
          return;
        }
        const began = Date.now();
        const result = await store.replay({
          filter: request.filter,
          limit: batch,
          force: request.force,
          actor: request.actor,
          ...(afterId === undefined ? {} : { afterId }),
        });
        status.examined += result.examined;
        status.replayed += result.count;
        status.skipped += result.skipped.length;
        for (const s of result.skipped) {
          const reason = `${s.id}: ${s.why}`;
          if (status.skippedReasons.length < 20) status.skippedReasons.push(reason);
        }
        if (result.done || result.lastId === null) {
          status.state = 'done';
          return;
        }
        afterId = result.lastId;
        const due = (result.count / request.ratePerSecond) * 1000 - (Date.now() - began);
        if (due > 0) await sleep(due, undefined, { signal: stop.signal }).catch(() => undefined);
      }
    } catch (error) {
      status.state = 'failed';
      status.error = describeError(error);
    } finally {
      status.finishedAt = new Date().toISOString();
    }
  };
  const finished = run();
  return { status, cancel: () => stop.abort(), finished };
}
