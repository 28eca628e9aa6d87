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
  /** Its due time in ms since the epoch, for a row that was scheduled (moved from `outbox_scheduled`); else null. */
  deliver_ms?: number | null;
  attempts: number;
  /** Its last publish failed in a channel the broker closed with 406: it is published alone. */
  suspect: boolean;
}

/** How `last_error` starts for a row whose channel the broker closed with 406 (see publish-rows.ts). */
export const PRECONDITION_FAILED_PREFIX = 'PRECONDITION_FAILED (406):';

/**
 * The relay's statements on `outbox` for one schema, built once (the schema is validated and
 * quoted here). Dead letters are written by core's `writeDeadLetters`, the one writer of that table.
 *
 * Every function, operator and type is schema-qualified (`pg_catalog.now()`,
 * `OPERATOR(pg_catalog.=)`, exact argument types), so objects planted in a schema of the
 * connection's `search_path` are never called: an unqualified `mod(bigint, int)` or
 * `integer * interval` would pick a planted exact match over pg_catalog's inexact one. The batch
 * transaction also pins `search_path` (see relay-batch.ts).
 */
export interface RelaySql {
  /** Claims due rows in id order, skipping rows other relays hold. */
  claim: string;
  /** Claims due rows of the leased partitions, never overtaking an earlier row of a key. */
  claimOrdered: string;
  /** Deletes settled rows: confirmed ones and those moved to the dead letters. */
  remove: string;
  /**
   * Deletes published rows and writes them into `outbox_archive` in one statement (the relay's
   * `archive` option): a row is in exactly one of the two tables at every commit.
   */
  removeArchived: string;
  /** Pushes failed rows back with their next attempt's delay and the error. */
  retry: string;
}

const COLUMNS = `o.id, o.message_id, o.type, o.exchange, o.routing_key, o.key, o.headers::pg_catalog.text AS headers,
  o.payload::pg_catalog.text AS payload,
  (extract(epoch FROM o.occurred_at) OPERATOR(pg_catalog.*) 1000)::double precision AS occurred_ms,
  (extract(epoch FROM o.created_at) OPERATOR(pg_catalog.*) 1000)::double precision AS created_ms,
  (extract(epoch FROM o.deliver_at) OPERATOR(pg_catalog.*) 1000)::double precision AS deliver_ms, o.attempts,
  (o.last_error IS NOT NULL AND pg_catalog.starts_with(o.last_error, '${PRECONDITION_FAILED_PREFIX}')) AS suspect`;

const DUE = `o.available_at OPERATOR(pg_catalog.<=) pg_catalog.now()`;

/** Builds the relay's SQL for `schema`. */
export function relaySql(schema: string): RelaySql {
  const outbox = `${quoteIdentifier(schema)}.outbox`;
  return {
    // $1 batch size. Rows of other relays' batches are skipped, never waited for.
    claim: `SELECT ${COLUMNS} FROM ${outbox} o WHERE ${DUE} ORDER BY o.id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    // $1 batch size, $2 partitions, $3 leased partitions. A row is eligible only if no earlier row
    // of its key is waiting in backoff; rows are locked without SKIP LOCKED so that a row still
    // held by a relay that lost its lease is waited for, never overtaken.
    claimOrdered: `SELECT ${COLUMNS} FROM ${outbox} o
      WHERE pg_catalog.mod(pg_catalog.hashtext(coalesce(o.key, o.message_id::pg_catalog.text))::bigint OPERATOR(pg_catalog.+) 2147483648::bigint,
              $2::bigint)::int OPERATOR(pg_catalog.=) ANY ($3::int[])
        AND ${DUE}
        AND (o.key IS NULL OR NOT EXISTS (
          SELECT 1 FROM ${outbox} p WHERE p.key OPERATOR(pg_catalog.=) o.key AND p.id OPERATOR(pg_catalog.<) o.id
            AND p.available_at OPERATOR(pg_catalog.>) pg_catalog.now()))
      ORDER BY o.id LIMIT $1 FOR UPDATE OF o`,
    // $1 ids, comma-separated (one string: pg serializes it in one step, not element by element)
    remove: `DELETE FROM ${outbox} WHERE id OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array($1::pg_catalog.text, ',')::bigint[])`,
    // $1 ids, comma-separated. published_at defaults to now(): the batch transaction's start,
    // the day partition it lands in.
    removeArchived: `WITH gone AS (DELETE FROM ${outbox} WHERE id OPERATOR(pg_catalog.=) ANY (pg_catalog.string_to_array($1::pg_catalog.text, ',')::bigint[])
        RETURNING id, message_id, type, exchange, routing_key, key, headers, payload, occurred_at)
      INSERT INTO ${quoteIdentifier(schema)}.outbox_archive (outbox_id, message_id, type, exchange, routing_key, key, headers, payload, occurred_at)
      SELECT id, message_id, type, exchange, routing_key, key, headers, payload, occurred_at FROM gone`,
    // $1 ids, $2 delays in ms, $3 errors
    retry: `UPDATE ${outbox} o SET attempts = o.attempts OPERATOR(pg_catalog.+) 1,
        available_at = pg_catalog.now() OPERATOR(pg_catalog.+) (d.delay_ms::double precision OPERATOR(pg_catalog.*) interval '1 millisecond'),
        last_error = d.error
      FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::int[]), pg_catalog.unnest($3::pg_catalog.text[])) AS d(id, delay_ms, error)
      WHERE o.id OPERATOR(pg_catalog.=) d.id`,
  };
}

/**
 * `statement` with its `$n` parameters written in as literals, so that a batch's statements can
 * travel in one simple-protocol message together with BEGIN or COMMIT (node-pg sends one message
 * per query and never pipelines; on a small machine every round trip costs the relay, the backend
 * and the kernel). Only what the relay itself produced is accepted, each checked: integers,
 * arrays of integers, and comma-joined bigint ids as read from the outbox.
 */
export function withLiterals(statement: string, values: ReadonlyArray<number | readonly number[] | string>): string {
  const literal = (value: number | readonly number[] | string): string => {
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) throw new Error(`not an integer: ${value}`);
      return String(value);
    }
    if (typeof value === 'string') {
      if (!/^[0-9]+(,[0-9]+)*$/.test(value)) throw new Error('not comma-joined ids');
      return `'${value}'`;
    }
    if (!value.every((n) => Number.isSafeInteger(n))) throw new Error('not an array of integers');
    return `'{${value.join(',')}}'`;
  };
  return statement.replace(/\$([0-9]+)/g, (_, n: string) => {
    const value = values[Number(n) - 1];
    if (value === undefined) throw new Error(`no value for $${n}`);
    return literal(value);
  });
}

