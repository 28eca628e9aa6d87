// `@mailroom/core/internal`: what mailroom's own packages share and services do not call. No
// stability promise beyond the workspace: outbox, inbox, dlq, chaos and the CLI move with it.
export { validateIdentifier, quoteIdentifier } from './identifiers.js';
export { parseConfig } from './config.js';
export { contractOf, CONTRACT_OF } from './message.js';
export {
  RESERVED_HEADER_PREFIX,
  headerText,
  isReservedHeader,
  encodeOutboxHeaders,
  envelopeHeaders,
  deliveryKey,
  decodeDelivery,
  encodeRetryCopy,
  encodeDeadLetterCopy,
  decodeDeadLetter,
  replayHeaders,
  occurredAtOf,
} from './envelope-codec.js';
export type { WireMessage, WireProperties, CopyProperties, Origin, DecodedDelivery, DecodedDeadLetter, DeadLetterVerdict } from './envelope-codec.js';
export { deriveMessageId } from './derived-message-id.js';
export { publishConfirmed } from './confirmed-publish.js';
export type { PublishOutcome, ConfirmChannelLike, ReturnedMessage, PublishConfirmedOptions } from './confirmed-publish.js';
export { declareDeadLetterTopology, resolveDeadLetterTopology, delayQueueName } from './dead-letter-topology.js';
export type { TopologyChannel } from './dead-letter-topology.js';
export { writeDeadLetters } from './dead-letter-writer.js';
export type { DeadLetterRecord } from './dead-letter-writer.js';
export { failureFingerprint } from './fingerprint.js';
export { backoffDelay } from './backoff.js';
export type { Backoff } from './backoff.js';
export { toExecutor, inTransaction, transactionExecutor, isKysely, isPgPool } from './executor.js';
export type { Executor } from './executor.js';
export { renderMigrations } from './migrations.js';
export type { MigrationSource, RenderedMigration } from './migrations.js';
export { resolveAmqpConnection } from './amqp-connection.js';
export { AmqpSubscription } from './amqp-subscription.js';
export type { AmqpSubscriptionOptions, SubscribableChannel } from './amqp-subscription.js';
export { mailroomTracer, injectTraceContext, extractTraceContext, withSpan, startSpanFromHeaders, SpanKind, SpanStatusCode } from './telemetry.js';
export type { Span } from './telemetry.js';
export { LATENCY_BUCKETS } from './metrics.js';
export { crashPoint } from './crash-point.js';
