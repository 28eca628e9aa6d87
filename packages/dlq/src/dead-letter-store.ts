import type { MetricsRegistry, Queryable } from '@mailroom/core';
import { parseConfig, toExecutor, writeDeadLetters } from '@mailroom/core/internal';
import type { DeadLetter, DeadLetterGroup, NewDeadLetter } from './dead-letter.js';
import { discardDeadLetters } from './dead-letter-discard.js';
import { registerDeadLetterGauge } from './dead-letter-metrics.js';
import { deadLetterGroups, listDeadLetters, showDeadLetter, type ListDeadLettersOptions } from './dead-letter-queries.js';
import { replayDeadLetters, type ReplayOptions, type ReplayResult } from './dead-letter-replay.js';
import { toDeadLetterRecord } from './dead-letter-row.js';
import type { DeadLetterSelection } from './dead-letter-selection.js';
import { deadLetterStoreOptionsSchema, type DeadLetterStoreOptions } from './dead-letter-store-options.js';
import { storeContext } from './store-context.js';

/** The dead-letter store: the API behind `mailroom dlq`. */
export interface DeadLetterStore {
  /**
   * Records a dead letter, idempotently by (source, message id): a second record of the same
   * message updates the reason, error, attempts and last failure, and keeps the first failure.
   * A failure newer than the last replay makes the dead letter pending again. Pass an open
   * transaction as `tx` to record it atomically with other work.
   */
  record(deadLetter: NewDeadLetter, tx?: Queryable): Promise<void>;
  /** Lists dead letters, newest failure first. */
  list(options?: ListDeadLettersOptions): Promise<DeadLetter[]>;
  /** One dead letter by row id or message id (the newest row when several sources have it). */
  show(id: string): Promise<DeadLetter | undefined>;
  /** Failure groups with their counts, largest first. */
  groups(): Promise<DeadLetterGroup[]>;
  /**
   * Puts dead letters back into the outbox in one transaction, keeping their message ids, and
   * marks them replayed. Refuses (`REPLAY_REFUSED`) messages older than the shortest inbox
   * retention window unless `force`. Skips rows without a JSON payload or type, and rows whose
   * message is still waiting in the outbox from an earlier replay.
   */
  replay(options: ReplayOptions): Promise<ReplayResult>;
  /** Deletes dead letters; returns how many. */
  discard(selection: DeadLetterSelection): Promise<number>;
  /**
   * Adds the gauge `mailroom_dead_letters{group,source,reason}` (dead letters not replayed, by
   * failure group) to `registry`; it queries the store each time the registry renders.
   */
  registerMetrics(registry: MetricsRegistry): void;
}

/**
 * Opens the dead-letter store in `schema`. Nothing is queried until a method is called. The
 * store writes `dead_letters` only through core's `writeDeadLetters`, the one statement the
 * relay uses too, so both writers follow the same rules.
 */
export function createDeadLetterStore(options: DeadLetterStoreOptions): DeadLetterStore {
  const resolved = parseConfig(deadLetterStoreOptionsSchema, options, 'dead-letter store options');
  const ctx = storeContext(resolved.db, resolved.schema);
  const groups = (): Promise<DeadLetterGroup[]> => deadLetterGroups(ctx);
  return {
    record: (deadLetter, tx) => writeDeadLetters(toExecutor(tx ?? ctx.db), ctx.schema, [toDeadLetterRecord(deadLetter)]),
    list: (filter) => listDeadLetters(ctx, filter),
    show: (id) => showDeadLetter(ctx, id),
    groups,
    replay: (replayOptions) => replayDeadLetters(ctx, replayOptions),
    discard: (selection) => discardDeadLetters(ctx, selection),
    registerMetrics: (registry) => registerDeadLetterGauge(registry, groups),
  };
}
