import { DEAD_LETTER_REASON, type MetricsRegistry, type Queryable } from '@mailroom/core';
import { parseConfig, toExecutor, writeDeadLetters } from '@mailroom/core/internal';
import { defaultActor, listActions, type DeadLetterAction } from './dead-letter-audit.js';
import type { DeadLetter, DeadLetterGroup, NewDeadLetter } from './dead-letter.js';
import { discardDeadLetters, type DiscardOptions } from './dead-letter-discard.js';
import { registerDeadLetterMetrics } from './dead-letter-metrics.js';
import { deadLetterTimeline, storeOverview, type DeadLetterTimeline, type StoreOverview, type TimelineOptions } from './dead-letter-overview.js';
import {
  countDeadLetters,
  deadLetterGroups,
  iterateDeadLetters,
  listDeadLetters,
  pageDeadLetters,
  previewSelection,
  showDeadLetter,
  type DeadLetterPage,
  type ListDeadLettersOptions,
  type SelectionPreview,
} from './dead-letter-queries.js';
import { replayDeadLetters, type ReplayOptions, type ReplayResult } from './dead-letter-replay.js';
import { toDeadLetterRecord } from './dead-letter-row.js';
import type { DeadLetterFilter, DeadLetterSelection } from './dead-letter-selection.js';
import { deadLetterStoreOptionsSchema, type DeadLetterStoreOptions } from './dead-letter-store-options.js';
import { heldBehindHead, parkedMessages } from './parked-release.js';
import { storeContext, type StoreContext } from './store-context.js';

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
  /**
   * One page of dead letters matching a filter, newest failure first, and the cursor of the next
   * page (`next`, passed back as `after`). Keyset pagination: as fast on page 1,000 as on page 1.
   */
  page(options?: ListDeadLettersOptions): Promise<DeadLetterPage>;
  /** How many dead letters match a filter (a count of what matches). */
  count(filter?: DeadLetterFilter): Promise<number>;
  /**
   * Every dead letter matching a filter, newest failure first, read a page at a time (an export
   * of a million rows holds one page in memory). `batchSize` defaults to 500.
   */
  iterate(filter?: DeadLetterFilter, options?: { batchSize?: number }): AsyncIterable<DeadLetter>;
  /** The registered consumers and the dead-letter counts (the outbox's figures: `readOutboxOverview` of `@mailroom/outbox`). */
  overview(): Promise<StoreOverview>;
  /** Dead letters by failure group over time (counts of last failures per bucket). */
  timeline(options?: TimelineOptions): Promise<DeadLetterTimeline>;
  /** One dead letter by row id or message id (the newest row when several sources have it). */
  show(id: string): Promise<DeadLetter | undefined>;
  /** Failure groups with their counts, largest first. */
  groups(): Promise<DeadLetterGroup[]>;
  /**
   * The messages parked behind a dead letter (by row id or message id), in the order they
   * arrived: later messages of its key that a consumer with ordering stored instead of handling
   * them out of order. Empty when nothing is parked behind it. Released ones stay listed (their
   * `parkedBehind` is then unset) until they are handled or dead-lettered again.
   */
  parked(id: string): Promise<DeadLetter[]>;
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
   * and rows whose message is still waiting in the outbox from an earlier replay. With `limit`,
   * examines that many rows of the selection (by row id, after `afterId`) per call: loop on
   * `lastId` until `done` to replay a large set in short transactions. With `payload` (one id),
   * sends that edited JSON payload instead of the stored one.
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
   * Adds the gauges `mailroom_dead_letters{group,source,reason}` (dead letters not replayed, by
   * failure group, the 50 largest groups and `other`) and `mailroom_dead_letters_stored` to
   * `registry` (see `registerDeadLetterMetrics`); one grouped query each time the registry renders.
   */
  registerMetrics(registry: MetricsRegistry): void;
}

/** Sets `parkedBehind` on the dead letters that wait behind a head (one query for the lot). */
async function withParking(ctx: StoreContext, deadLetters: DeadLetter[]): Promise<DeadLetter[]> {
  const parked = deadLetters.filter((dl) => dl.reason === DEAD_LETTER_REASON.parked);
  if (parked.length === 0) return deadLetters;
  const heads = await heldBehindHead(toExecutor(ctx.db), ctx, parked);
  for (const dl of parked) {
    const head = heads.get(dl.messageId);
    if (head !== undefined) dl.parkedBehind = head;
  }
  return deadLetters;
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
    list: async (filter) => withParking(ctx, await listDeadLetters(ctx, filter)),
    page: async (filter) => {
      const page = await pageDeadLetters(ctx, filter);
      await withParking(ctx, page.deadLetters);
      return page;
    },
    count: (filter) => countDeadLetters(ctx, filter),
    iterate: (filter, iterateOptions) => iterateDeadLetters(ctx, filter, iterateOptions?.batchSize),
    overview: () => storeOverview(ctx),
    timeline: (timelineOptions) => deadLetterTimeline(ctx, timelineOptions),
    show: async (id) => {
      const dl = await showDeadLetter(ctx, id);
      if (dl !== undefined) await withParking(ctx, [dl]);
      return dl;
    },
    parked: async (id) => {
      const head = await showDeadLetter(ctx, id);
      return head === undefined ? [] : withParking(ctx, await parkedMessages(toExecutor(ctx.db), ctx, head));
    },
    groups,
    preview: (selection, previewOptions) => previewSelection(ctx, selection, previewOptions),
    replay: (replayOptions) => replayDeadLetters(ctx, replayOptions),
    discard: (discardOptions) => discardDeadLetters(ctx, discardOptions),
    actions: (actionOptions) => listActions(ctx, actionOptions),
    registerMetrics: (registry) => registerDeadLetterMetrics(registry, groups),
  };
}
