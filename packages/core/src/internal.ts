// `@mailroom/core/internal`: what mailroom's own packages share and services do not call. No
// stability promise beyond the workspace: outbox, inbox, dlq, chaos and the CLI move with it.
export { validateIdentifier, quoteIdentifier } from './identifiers.js';
export { parseConfig } from './config.js';
export { contractOf, CONTRACT_OF } from './message.js';
export { RESERVED_HEADER_PREFIX } from './envelope/header-names.js';
export {
  headerText,
  isReservedHeader,
  encodeOutboxHeaders,
  envelopeHeaders,
  deliveryKey,
  replayHeaders,
  occurredAtOf,
  occurredAtOfMessage,
  occurredAtTimestamp,
} from './envelope/header-values.js';
export { decodeDelivery } from './envelope/delivery-codec.js';
export { VERSION_HEADER, readVersionHeader, versionOfHeaders, withVersionHeader } from './envelope/version-header.js';
export type { VersionReading } from './envelope/version-header.js';
export { describeIssues } from './standard-schema.js';
export { encodeRetryCopy, encodeDeadLetterCopy } from './envelope/copy-codec.js';
export { decodeDeadLetter, UNSEALED_SOURCE } from './envelope/dead-letter-codec.js';
export { createEnvelopeSeal, loadEnvelopeSeal } from './envelope/envelope-seal.js';
export type { EnvelopeSeal } from './envelope/envelope-seal.js';
export type { WireMessage, WireProperties, CopyProperties, Origin, DecodedDelivery, DecodedDeadLetter, DeadLetterVerdict } from './envelope/wire-types.js';
export { deriveMessageId } from './derived-message-id.js';
export { confirmOutcome, publishConfirmed, tracingIsOff } from './confirmed-publish.js';
export type { PublishOutcome, ConfirmChannelLike, ReturnedMessage, PublishConfirmedOptions, PublishProperties } from './confirmed-publish.js';
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
export { COMPONENT_GRANTS, GRANT_FEATURES, MAILROOM_COMPONENTS, componentGrants, grantsScript, quoteRoleName, missingGrants, assertGrants } from './grants.js';
export type { MailroomComponent, GrantFeature, GrantFeatures, TablePrivilege, TableGrant, GrantRoles, MissingGrant } from './grants.js';
export { PUBLISH_LIMITS, TRACE_CONTEXT_RESERVE_BYTES, publishLimitProblem, checkPublishLimits, encodedHeaderBytes } from './publish-limits.js';
export type { PublishShape } from './publish-limits.js';
export { STORED_CHANGES_HEADER } from './envelope/stored-changes.js';
export { DEFAULT_INBOX_RETENTION_MS } from './inbox-retention-default.js';
export { checkOut, guardPool, describeLostConnection } from './pg-checkout.js';
export type { CheckedOutClient } from './pg-checkout.js';
export { isTransientDatabaseError, retryTransient, describeTransient } from './transient-error.js';
export type { RetryTransientOptions } from './transient-error.js';
