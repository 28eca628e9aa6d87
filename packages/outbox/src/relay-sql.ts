import { quoteIdentifier } from '@mailroom/core/internal';

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

/**
 * The relay's statements on `outbox` for one schema, built once (the schema is validated and
 * quoted here). Dead letters are written by core's `writeDeadLetters`, the one writer of that table.
 */
export interface RelaySql {
  /** Claims due rows in id order, skipping rows other relays hold. */
  claim: string;
  /** Claims due rows of the leased partitions, never overtaking an earlier row of a key. */
  claimOrdered: string;
  /** Deletes settled rows: confirmed ones and those moved to the dead letters. */
  remove: string;
  /** Pushes failed rows back with their next attempt's delay and the error. */
  retry: string;
  /** Rows waiting and the age of the oldest. */
  backlog: string;
}

const COLUMNS = `o.id, o.message_id, o.type, o.exchange, o.routing_key, o.key, o.headers::text AS headers, o.payload::text AS payload,
  (extract(epoch FROM o.occurred_at) * 1000)::float8 AS occurred_ms, (extract(epoch FROM o.created_at) * 1000)::float8 AS created_ms, o.attempts`;

/** Builds the relay's SQL for `schema`. */
export function relaySql(schema: string): RelaySql {
  const outbox = `${quoteIdentifier(schema)}.outbox`;
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
    // $1 ids
    remove: `DELETE FROM ${outbox} WHERE id = ANY($1::bigint[])`,
    // $1 ids, $2 delays in ms, $3 errors
    retry: `UPDATE ${outbox} o SET attempts = o.attempts + 1, available_at = now() + d.delay_ms * interval '1 millisecond', last_error = d.error
      FROM unnest($1::bigint[], $2::int[], $3::text[]) AS d(id, delay_ms, error) WHERE o.id = d.id`,
    backlog: `SELECT count(*)::int AS rows, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age FROM ${outbox}`,
  };
}
