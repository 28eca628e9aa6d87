// The public entry of @mailroom/core: what services call. Internals shared by mailroom's own
// packages are in `@mailroom/core/internal`.
export { MailroomError, isMailroomError, describeError } from './errors.js';
export { redactSecrets, redactUrl } from './redact.js';
export type { MailroomErrorCode, MailroomErrorOptions } from './errors.js';
export { defineMessage, isMessageContract, isUuid, DEFAULT_EXCHANGE } from './message.js';
export type { Envelope, OutgoingMessage, MessageContract, CreateMessageOptions, DefineMessageOptions, PayloadOf } from './message.js';
export { MAX_CONTRACT_VERSION } from './contract-versions.js';
export type { ContractVersion, Upcaster } from './contract-versions.js';
export { isStandardSchema } from './standard-schema.js';
export type { StandardSchemaV1, StandardSchemaProps, StandardJsonSchemaConverter, StandardResult, StandardIssue, InferInput, InferOutput } from './standard-schema.js';
export { CONTENT_TYPE } from './envelope/header-names.js';
export { DEAD_LETTER_REASON, DEAD_LETTER_REASONS, isDeadLetterReason } from './dead-letter-reason.js';
export type { DeadLetterReason } from './dead-letter-reason.js';
export { DEFAULT_DEAD_LETTERS } from './dead-letter-topology.js';
export type { DeadLetterTopology } from './dead-letter-topology.js';
export type { Queryable, PgQueryable, PgPoolLike, PgPoolClientLike, KyselyLike, KyselyCompiledQueryLike, QueryResult } from './executor.js';
export { migrate, migrationScript, DEFAULT_SCHEMA } from './migrations.js';
export type { MigrateOptions, MigrateResult } from './migrations.js';
export { createAmqpConnection } from './amqp-connection.js';
export type { AmqpConnection, AmqpConnectionOptions, AmqpConnectionEvents, AmqpChannelModel, AmqpTlsOptions } from './amqp-connection.js';
export { COMPONENT_GRANTS, GRANT_FEATURES, MAILROOM_COMPONENTS, componentGrants, grantsScript, missingGrants, assertGrants } from './grants.js';
export type { MailroomComponent, GrantFeature, GrantFeatures, TablePrivilege, TableGrant, GrantRoles, MissingGrant } from './grants.js';
export { MetricsRegistry } from './metrics.js';
export type { Counter, Histogram } from './metrics.js';
export { createConsoleLogger, silentLogger } from './logger.js';
export type { Logger, LogLevel, ConsoleLoggerOptions } from './logger.js';
