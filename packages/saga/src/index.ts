// The public entry of @mailroom/saga: define a saga, run its steps as inbox handlers, read and
// clean its instances.
export { defineSaga, step, SAGA_STATUSES } from './saga-definition.js';
export type {
  Saga,
  SagaDefinition,
  SagaStep,
  StepFactory,
  StepDefinition,
  StepContext,
  SagaInstanceInfo,
  SagaStatus,
  SendOptions,
  AfterEnd,
} from './saga-definition.js';
export { sagaHandlers, DEFAULT_MAX_STATE_BYTES } from './saga-handlers.js';
export type { SagaHandlersOptions } from './saga-handlers.js';
export { SagaNotStartedError, isSagaNotStartedError } from './saga-errors.js';
export { MAX_INSTANCE_ID_LENGTH } from './correlation-id.js';
export { listSagas, readSaga } from './saga-store.js';
export type { SagaSummary, SagaRecord, SagaHistoryEntry, SagaSnapshot, ListSagasOptions, ReadSagaOptions } from './saga-store.js';
export { cleanupSagas, DEFAULT_SAGA_RETENTION_MS } from './saga-cleanup.js';
export type { CleanupSagasOptions } from './saga-cleanup.js';
export { sagaMetrics } from './saga-metrics.js';
export type { SagaMetricsOptions, SagaStepOutcome } from './saga-metrics.js';
