// The public entry of @mailroom/dlq: the dead-letter store (inspect, replay, discard, audit) and
// the sink that drains the broker's dead-letter queue into it.
export { createDeadLetterStore } from './dead-letter-store.js';
export type { DeadLetterStore } from './dead-letter-store.js';
export type { DeadLetterStoreOptions } from './dead-letter-store-options.js';
export { DEAD_LETTER_SERIES, registerDeadLetterMetrics } from './dead-letter-metrics.js';
export type { DeadLetterMetricsOptions } from './dead-letter-metrics.js';
export type { DeadLetter, NewDeadLetter, DeadLetterGroup } from './dead-letter.js';
export type { DeadLetterFilter, DeadLetterSelection } from './dead-letter-selection.js';
export type { ListDeadLettersOptions, DeadLetterPage, SelectionPreview } from './dead-letter-queries.js';
export type { StoreOverview, DeadLetterTimeline, TimelineOptions } from './dead-letter-overview.js';
export type { ReplayOptions, ReplayResult, SkippedReplay } from './dead-letter-replay.js';
export type { ReplayTarget } from './replay-target.js';
export type { DiscardOptions } from './dead-letter-discard.js';
export type { DeadLetterAction, DeadLetterActionKind } from './dead-letter-audit.js';
export { createDeadLetterSink } from './dead-letter-sink.js';
export type { DeadLetterSink, DeadLetterSinkEvents, DeadLetterSinkStats, StoredDeadLetterInfo } from './dead-letter-sink.js';
export type { StoreFailureCause } from './store-failure.js';
export { deadLetterSinkOptionsSchema } from './dead-letter-sink-options.js';
export type { DeadLetterSinkOptions } from './dead-letter-sink-options.js';
// The vocabulary callers of the store use, from core (where it is defined once).
export { DEAD_LETTER_REASON, DEFAULT_DEAD_LETTERS } from '@mailroom/core';
export type { DeadLetterReason, DeadLetterTopology } from '@mailroom/core';
