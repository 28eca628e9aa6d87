import type { Executor } from './executor.js';
import { failureFingerprint } from './fingerprint.js';
import { quoteIdentifier } from './identifiers.js';

/** One dead letter to write, as the relay and the store both hand it over. */
export interface DeadLetterRecord {
  /** A UUID. */
  messageId: string;
  /** The consumer's queue, or `relay`. */
  source: string;
  reason: string;
  error: string | null;
  attempts: number;
  failedAt: Date;
  type: string | null;
  exchange: string | null;
  routingKey: string | null;
  key: string | null;
  /** The headers as JSON text. */
  headersJson: string;
  /** The payload as JSON text, or null when the body is not JSON (then `body` is kept). */
  payloadJson: string | null;
  body: Buffer | null;
}

/**
 * The one statement that writes `dead_letters`: an upsert of many rows by (source, message id),
 * with every built-in schema-qualified (a hostile search_path of the caller's connection changes nothing).
 * A second record of the same message updates the reason, error and last failure, keeps the
 * first failure and the largest attempt count, and — when it failed again after a replay — makes
 * the dead letter pending again (`replayed_at` cleared).
 */
function upsertSql(schema: string): string {
  const table = `${quoteIdentifier(schema)}.dead_letters`;
  return `INSERT INTO ${table} AS d (message_id, source, reason, error, attempts, first_failed_at, last_failed_at, type, exchange,
      routing_key, key, headers, payload, body, fingerprint)
    SELECT r.message_id, r.source, r.reason, r.error, r.attempts, r.failed_at, r.failed_at, r.type, r.exchange,
      r.routing_key, r.key, r.headers, r.payload, r.body, r.fingerprint
    FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[]),
      pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.int4[]), pg_catalog.unnest($6::pg_catalog.timestamptz[]),
      pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]), pg_catalog.unnest($9::pg_catalog.text[]),
      pg_catalog.unnest($10::pg_catalog.text[]), pg_catalog.unnest($11::pg_catalog.jsonb[]), pg_catalog.unnest($12::pg_catalog.jsonb[]),
      pg_catalog.unnest($13::pg_catalog.bytea[]), pg_catalog.unnest($14::pg_catalog.text[]))
      AS r(message_id, source, reason, error, attempts, failed_at, type, exchange, routing_key, key, headers, payload, body, fingerprint)
    ON CONFLICT (source, message_id) DO UPDATE SET
      reason = excluded.reason, error = excluded.error, attempts = GREATEST(d.attempts, excluded.attempts),
      first_failed_at = LEAST(d.first_failed_at, excluded.first_failed_at),
      last_failed_at = GREATEST(d.last_failed_at, excluded.last_failed_at),
      type = COALESCE(excluded.type, d.type), exchange = COALESCE(excluded.exchange, d.exchange),
      routing_key = COALESCE(excluded.routing_key, d.routing_key), key = COALESCE(excluded.key, d.key),
      headers = excluded.headers, payload = excluded.payload, body = excluded.body, fingerprint = excluded.fingerprint,
      replayed_at = CASE WHEN d.replayed_at IS NOT NULL AND excluded.last_failed_at OPERATOR(pg_catalog.>) d.replayed_at THEN NULL ELSE d.replayed_at END`;
}

const statements = new Map<string, string>();

/**
 * Writes dead letters into `<schema>.dead_letters` in one statement (see {@link upsertSql}).
 * Rows with the same (source, message id) in one call are written once (the last one wins), as
 * PostgreSQL refuses to upsert one row twice in a statement.
 */
export async function writeDeadLetters(db: Executor, schema: string, records: readonly DeadLetterRecord[]): Promise<void> {
  if (records.length === 0) return;
  const unique = new Map<string, DeadLetterRecord>();
  for (const r of records) unique.set(`${r.source}\u0000${r.messageId.toLowerCase()}`, r);
  const rows = [...unique.values()];
  let sql = statements.get(schema);
  if (sql === undefined) {
    sql = upsertSql(schema);
    statements.set(schema, sql);
  }
  await db.query(sql, [
    rows.map((r) => r.messageId),
    rows.map((r) => r.source),
    rows.map((r) => r.reason),
    rows.map((r) => r.error),
    rows.map((r) => r.attempts),
    rows.map((r) => r.failedAt),
    rows.map((r) => r.type),
    rows.map((r) => r.exchange),
    rows.map((r) => r.routingKey),
    rows.map((r) => r.key),
    rows.map((r) => r.headersJson),
    rows.map((r) => r.payloadJson),
    rows.map((r) => r.body),
    rows.map((r) => failureFingerprint({ source: r.source, reason: r.reason, type: r.type, error: r.error })),
  ]);
}
