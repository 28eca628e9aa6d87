import type { MetricsRegistry, Queryable } from '@mailroom/core';
import { parseConfig, toExecutor, writeDeadLetters } from '@mailroom/core/internal';
import { defaultActor, listActions, type DeadLetterAction } from './dead-letter-audit.js';
import type { DeadLetter, DeadLetterGroup, NewDeadLetter } from './dead-letter.js';
import { discardDeadLetters, type DiscardOptions } from './dead-letter-discard.js';
import { registerDeadLetterGauge } from './dead-letter-metrics.js';
import {
  deadLetterGroups,
  listDeadLetters,
  previewSelection,
  showDeadLetter,
  type ListDeadLettersOptions,
  type SelectionPreview,
} from './dead-letter-queries.js';
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
  /** Lists dead letters, newest failure first; each says where a replay would go (`replayTarget`). */
  list(options?: ListDeadLettersOptions): Promise<DeadLetter[]>;
  /** One dead letter by row id or message id (the newest row when several sources have it). */
  show(id: string): Promise<DeadLetter | undefined>;
  /** Failure groups with their counts, largest first. */
  groups(): Promise<DeadLetterGroup[]>;
  /**
   * What a replay or discard of `selection` would act on: how many dead letters, and the first
   * `limit` (default 20) of them. Changes nothing.
   */
  preview(selection: DeadLetterSelection, options?: { limit?: number }): Promise<SelectionPreview>;
  /**
   * Puts dead letters back into the outbox in one transaction, keeping their message ids, marks
   * them replayed and records the replay in the audit. Refuses (`REPLAY_REFUSED`) messages older
   * than the shortest inbox retention window (the default 7 days when no consumer registered
   * one) unless `force`. Skips, with the reason, every dead letter whose `replayTarget` says it
   * cannot be replayed (unsealed, changed to be stored, no type, JSON payload or destination),
   * and rows whose message is still waiting in the outbox from an earlier replay.
   */
  replay(options: ReplayOptions): Promise<ReplayResult>;
  /**
   * Deletes dead letters and records the discard in the audit, in one transaction; returns how
   * many. With `dryRun`, only counts them. (The CLI asks for confirmation; this API does not.)
   */
  discard(options: DiscardOptions): Promise<number>;
  /** The audit of replays and discards, newest first (default: the last 100). */
  actions(options?: { limit?: number }): Promise<DeadLetterAction[]>;
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
  const ctx = storeContext(resolved.db, resolved.schema, resolved.actor ?? defaultActor());
  const groups = (): Promise<DeadLetterGroup[]> => deadLetterGroups(ctx);
  return {
    record: (deadLetter, tx) => writeDeadLetters(toExecutor(tx ?? ctx.db), ctx.schema, [toDeadLetterRecord(deadLetter)]),
    list: (filter) => listDeadLetters(ctx, filter),
    show: (id) => showDeadLetter(ctx, id),
    groups,
    preview: (selection, previewOptions) => previewSelection(ctx, selection, previewOptions),
    replay: (replayOptions) => replayDeadLetters(ctx, replayOptions),
    discard: (discardOptions) => discardDeadLetters(ctx, discardOptions),
    actions: (actionOptions) => listActions(ctx, actionOptions),
    registerMetrics: (registry) => registerDeadLetterGauge(registry, groups),
  };
}
