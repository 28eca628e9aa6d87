import { quoteIdentifier } from '@mailroom/core';

/** A claimed outbox row as the relay reads it: payload and headers as text, ready to send. */
export interface OutboxRow {
  id: string;
  message_id: string;
  type: string;
  exchange: string;
  routing_key: string;
  key: string | null;
  headers: string;
  payload: string;
  /** Milliseconds since the epoch: a number is cheaper to read than a timestamp parsed into a Date. */
  occurred_ms: number;
  created_ms: number;
  attempts: number;
}

/** The relay's statements for one schema, built once (the schema is validated and quoted here). */
export interface RelaySql {
  claim: string;
  claimOrdered: string;
  complete: string;
  retry: string;
  deadLetter: string;
  backlog: string;
}

const COLUMNS = `o.id, o.message_id, o.type, o.exchange, o.routing_key, o.key, o.headers::text AS headers, o.payload::text AS payload,
  (extract(epoch FROM o.occurred_at) * 1000)::float8 AS occurred_ms, (extract(epoch FROM o.created_at) * 1000)::float8 AS created_ms, o.attempts`;

/** Builds the relay's SQL for `schema`. */
export function relaySql(schema: string): RelaySql {
  const outbox = `${quoteIdentifier(schema)}.outbox`;
  const deadLetters = `${quoteIdentifier(schema)}.dead_letters`;
  return {
    // $1 batch size. Rows of other relays' batches are skipped, never waited for.
    claim: `SELECT ${COLUMNS} FROM ${outbox} o WHERE o.available_at <= now() ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    // $1 batch size, $2 partitions, $3 leased partitions. A row is eligible only if no earlier row
    // of its key is waiting in backoff; rows are locked without SKIP LOCKED so that a row still
    // held by a relay that lost its lease is waited for, never overtaken.
    claimOrdered: `SELECT ${COLUMNS} FROM ${outbox} o
      WHERE mod(hashtext(coalesce(o.key, o.message_id::text))::bigint + 2147483648, $2::int) = ANY($3::int[])
        AND o.available_at <= now()
        AND (o.key IS NULL OR NOT EXISTS (
          SELECT 1 FROM ${outbox} p WHERE p.key = o.key AND p.id < o.id AND p.available_at > now()))
      ORDER BY o.id LIMIT $1 FOR UPDATE OF o`,
    complete: `DELETE FROM ${outbox} WHERE id = ANY($1::bigint[])`,
    // $1 ids, $2 delays in ms, $3 errors
    retry: `UPDATE ${outbox} o SET attempts = o.attempts + 1, available_at = now() + d.delay_ms * interval '1 millisecond', last_error = d.error
      FROM unnest($1::bigint[], $2::int[], $3::text[]) AS d(id, delay_ms, error) WHERE o.id = d.id`,
    // $1 ids, $2 reasons, $3 errors, $4 fingerprints. Moves rows into the store in one statement.
    deadLetter: `WITH moved AS (DELETE FROM ${outbox} WHERE id = ANY($1::bigint[]) RETURNING *)
      INSERT INTO ${deadLetters} AS dl (message_id, source, reason, error, attempts, type, exchange, routing_key, key, headers, payload, fingerprint)
      SELECT m.message_id, 'relay', d.reason, d.error, m.attempts + 1, m.type, m.exchange, m.routing_key, m.key, m.headers, m.payload, d.fingerprint
      FROM moved m JOIN unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS d(id, reason, error, fingerprint) ON m.id = d.id
      ON CONFLICT (source, message_id) DO UPDATE SET reason = excluded.reason, error = excluded.error,
        attempts = dl.attempts + excluded.attempts, last_failed_at = now(), payload = excluded.payload,
        headers = excluded.headers, fingerprint = excluded.fingerprint, replayed_at = NULL`,
    backlog: `SELECT count(*)::int AS rows, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age FROM ${outbox}`,
  };
}
