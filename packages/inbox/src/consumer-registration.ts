import { MailroomError, type Queryable } from '@mailroom/core';
import { quoteIdentifier, toExecutor } from '@mailroom/core/internal';

/** What a consumer records about itself in `inbox_consumers`. */
export interface ConsumerRegistration {
  /** The consumer's name. */
  consumer: string;
  /** Its work queue. */
  queue: string;
  /** How long its inbox rows are kept, in ms. */
  retentionMs: number;
  /** How long after its first delivery a message can still be attempted, in ms. */
  retryHorizonMs: number;
}

/**
 * Records (or updates) the consumer in `<schema>.inbox_consumers`, so that tools that replay
 * or clean up can check their horizon against its retention. Fails with a message that says to
 * migrate when the schema has no inbox tables, or an inbox older than this version (no
 * `payload_hash`, migration 6). Built-ins are schema-qualified: a function or operator planted
 * earlier in the connection's search_path is never called.
 */
export async function registerConsumer(db: Queryable, schema: string, registration: ConsumerRegistration): Promise<void> {
  const q = quoteIdentifier(schema);
  const executor = toExecutor(db);
  const found = await executor.query<{ consumers: boolean; hash: boolean }>(
    `SELECT pg_catalog.to_regclass($1) IS NOT NULL AS consumers,
       EXISTS (SELECT FROM pg_catalog.pg_attribute
               WHERE attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($2) AND attname OPERATOR(pg_catalog.=) 'payload_hash' AND NOT attisdropped) AS hash`,
    [`${q}.inbox_consumers`, `${q}.inbox`],
  );
  if (found.rows[0]?.consumers !== true) {
    throw new MailroomError('NOT_MIGRATED', `Schema "${schema}" has no inbox tables: run \`mailroom migrate\` (or migrate() from @mailroom/core) first.`);
  }
  if (found.rows[0]?.hash !== true) {
    throw new MailroomError('NOT_MIGRATED', `Schema "${schema}" has an inbox older than this version (no payload_hash column, migration 6): run \`mailroom migrate\` (or migrate() from @mailroom/core) first.`);
  }
  await executor.query(
    `INSERT INTO ${q}.inbox_consumers (consumer, queue, retention_ms, retry_horizon_ms) VALUES ($1, $2, $3, $4)
     ON CONFLICT (consumer) DO UPDATE SET queue = excluded.queue, retention_ms = excluded.retention_ms,
       retry_horizon_ms = excluded.retry_horizon_ms, updated_at = pg_catalog.now()`,
    [registration.consumer, registration.queue, Math.floor(registration.retentionMs), registration.retryHorizonMs],
  );
}
