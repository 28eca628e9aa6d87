export { DEAD_LETTER_HEADERS, deriveMessageId } from './dead-letter-headers.js';
export type { DeadLetterReason } from './dead-letter-headers.js';
export { DEFAULT_DEAD_LETTERS, declareDeadLetterTopology, resolveDeadLetterTopology } from './topology.js';
export type { DeadLetterTopology } from './topology.js';
export { createDeadLetterStore } from './dead-letter-store.js';
export type {
  DeadLetter,
  NewDeadLetter,
  DeadLetterGroup,
  DeadLetterSelection,
  DeadLetterStore,
  DeadLetterStoreOptions,
  ListDeadLettersOptions,
  ReplayOptions,
  ReplayResult,
  SkippedReplay,
} from './dead-letter-store.js';
export { DeadLetterSink, createDeadLetterSink, deadLetterFromMessage } from './dead-letter-sink.js';
export type { DeadLetterSinkOptions } from './dead-letter-sink.js';
