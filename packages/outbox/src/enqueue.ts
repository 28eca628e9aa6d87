import { DEFAULT_SCHEMA, type OutgoingMessage, type Queryable } from '@mailroom/core';
import { SpanKind, contractOf, injectTraceContext, quoteIdentifier, transactionExecutor, withSpan, withVersionHeader } from '@mailroom/core/internal';
import { KEY_LOCK_SQL, keyLockSlots } from './key-lock.js';
import { keyLockClass } from './names.js';
import { checkOutgoingMessage, checkPublishable } from './outgoing-check.js';
import { resolveSchedule, type ScheduleSpec } from './schedule-options.js';
import { reportUnmigratedSchema } from './unmigrated-schema.js';

/** Options of {@link enqueue}. */
export interface EnqueueOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /**
   * Publish no earlier than this time (by the database's clock). A time in the past is due at
   * once. At most 10 years ahead. Not together with `delay`. See the README, "Scheduled delivery".
   */
  deliverAt?: Date;
  /**
   * Publish no earlier than this many milliseconds after the insert (the database's
   * `clock_timestamp()` at the insert). 0 to 10 years. Not together with `deliverAt`.
   */
  delay?: number;
}

/**
 * Stores events in the outbox inside the caller's transaction: they are published if and only if
 * that transaction commits. Pass a pg client between BEGIN and COMMIT, or a kysely Transaction.
 *
 * Messages come from `contract.create(payload, options)`; their payload is validated against the
 * contract again here, so a payload changed after `create` cannot slip through. Plain objects are
 * checked too: headers must be strings and none may use the reserved `x-mailroom-` prefix. What
 * the relay could never publish (a routing key, type or exchange over 255 bytes, headers over
 * 64 KiB once the trace context and mailroom's headers are added) is refused here with
 * `INVALID_MESSAGE`, naming the field.
 *
 * With `deliverAt` or `delay`, every message of the call is published no earlier than that time:
 * it waits in `outbox_scheduled` until the relay moves it into the outbox (see the README,
 * "Scheduled delivery"); `cancelScheduled` takes it back until then. A bad date or delay, or both
 * given, is refused with `INVALID_MESSAGE` before anything is stored.
 *
 * Events with a key lock the key's slot first (one of 1,024 per schema, see `key-lock.ts`), so
 * two transactions that enqueue the same key get ids in commit order and the relay can publish a
 * key in id order; a transaction holds at most 1,024 such locks however many keys it writes. The
 * trace context of the active span is stored with each event.
 *
 * `enqueue` itself sends no NOTIFY: the outbox's insert trigger (migration 9) notifies at commit
 * only while a relay sleeps, so producers' commits are not serialized by PostgreSQL's NOTIFY lock
 * while relays are busy or absent (see the README, "Waking the relay").
 * Every built-in the statements call is schema-qualified: the caller's `search_path` changes nothing.
 */
export async function enqueue(tx: Queryable, messages: OutgoingMessage | readonly OutgoingMessage[], options: EnqueueOptions = {}): Promise<void> {
  const list = (Array.isArray(messages) ? messages : [messages]) as readonly OutgoingMessage[];
  // Checked before anything else: a bad date stores nothing, even with an empty list.
  const schedule = resolveSchedule(options);
  if (list.length === 0) return;
  const schema = options.schema ?? DEFAULT_SCHEMA;
  if (schedule !== undefined) return enqueueScheduled(tx, list, schema, schedule);
  const table = `${quoteIdentifier(schema)}.outbox`;
  // An unmigrated schema fails with `NOT_MIGRATED` and the command to run, not a bare 42P01.
  const db = reportUnmigratedSchema(transactionExecutor(tx, 'enqueue'), schema);
  const payloads = encodePayloads(list);

  await withSpan(
    'mailroom enqueue',
    { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'rabbitmq', 'messaging.batch.message_count': list.length } },
    async () => {
      const headers = encodeHeaders(list);
      const slots = keyLockSlots(list.flatMap((m) => (typeof m.key === 'string' ? [m.key] : [])));
      if (slots.length > 0) await db.query(KEY_LOCK_SQL, [keyLockClass(schema), slots]);
      if (list.length === 1) {
        // One event, the common case: a plain INSERT … VALUES is the cheapest statement to parse
        // and plan, and its parameters need no array encoding.
        const m = list[0] as OutgoingMessage;
        await db.query(
          `INSERT INTO ${table} (message_id, type, exchange, routing_key, key, headers, payload, occurred_at)
           VALUES ($1::pg_catalog.uuid, $2::pg_catalog.text, $3::pg_catalog.text, $4::pg_catalog.text, $5::pg_catalog.text,
             $6::pg_catalog.jsonb, $7::pg_catalog.jsonb, $8::pg_catalog.timestamptz)`,
          [m.messageId, m.type, m.exchange, m.routingKey, m.key ?? null, headers[0], payloads[0], m.occurredAt],
        );
        return;
      }
      await db.query(
        `INSERT INTO ${table} (message_id, type, exchange, routing_key, key, headers, payload, occurred_at)
         SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[]),
           pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[]),
           pg_catalog.unnest($6::pg_catalog.jsonb[]), pg_catalog.unnest($7::pg_catalog.jsonb[]), pg_catalog.unnest($8::pg_catalog.timestamptz[]))`,
        [
          list.map((m) => m.messageId),
          list.map((m) => m.type),
          list.map((m) => m.exchange),
          list.map((m) => m.routingKey),
          list.map((m) => m.key ?? null),
          headers,
          payloads,
          list.map((m) => m.occurredAt),
        ],
      );
    },
  );
}

/**
 * Scheduled messages go to `outbox_scheduled` (migration 11), not the outbox: the relay moves
 * them into the outbox when they fall due, under the key locks (scheduled-mover.ts), so they take
 * no key lock here and never hold up their key while they wait. Its insert trigger re-arms a
 * relay's timer when a row is due before every other one.
 */
async function enqueueScheduled(tx: Queryable, list: readonly OutgoingMessage[], schema: string, schedule: ScheduleSpec): Promise<void> {
  const table = `${quoteIdentifier(schema)}.outbox_scheduled`;
  const db = reportUnmigratedSchema(transactionExecutor(tx, 'enqueue'), schema);
  const payloads = encodePayloads(list);
  // The due time: a bound date, or the database's clock at the insert plus the delay, so that
  // the relay (which compares with the database's clock) never publishes early whatever the
  // skew between this process and PostgreSQL.
  const due =
    schedule.kind === 'at'
      ? '$9::pg_catalog.timestamptz'
      : `pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) ($9::double precision OPERATOR(pg_catalog.*) interval '1 millisecond')`;
  const when = schedule.kind === 'at' ? schedule.at : schedule.ms;
  await withSpan(
    'mailroom enqueue',
    {
      kind: SpanKind.PRODUCER,
      attributes: { 'messaging.system': 'rabbitmq', 'messaging.batch.message_count': list.length, 'mailroom.scheduled': true },
    },
    async () => {
      const headers = encodeHeaders(list);
      await db.query(
        `INSERT INTO ${table} (message_id, type, exchange, routing_key, key, headers, payload, occurred_at, deliver_at)
         SELECT u.*, ${due} FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[]),
           pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), pg_catalog.unnest($5::pg_catalog.text[]),
           pg_catalog.unnest($6::pg_catalog.jsonb[]), pg_catalog.unnest($7::pg_catalog.jsonb[]), pg_catalog.unnest($8::pg_catalog.timestamptz[])) AS u`,
        [
          list.map((m) => m.messageId),
          list.map((m) => m.type),
          list.map((m) => m.exchange),
          list.map((m) => m.routingKey),
          list.map((m) => m.key ?? null),
          headers,
          payloads,
          list.map((m) => m.occurredAt),
          when,
        ],
      );
    },
  );
}

/** Each message checked and its payload validated again (it may have changed since `create`), as JSON text. */
function encodePayloads(list: readonly OutgoingMessage[]): string[] {
  return list.map((m) => {
    checkOutgoingMessage(m);
    const contract = contractOf(m);
    return JSON.stringify(contract === undefined ? m.payload : contract.parse(m.payload));
  });
}

/**
 * The stored headers of each message: the caller's, the contract version and the trace context
 * of the active span (call it inside the enqueue span), checked against what the relay can publish.
 */
function encodeHeaders(list: readonly OutgoingMessage[]): string[] {
  return list.map((m) => {
    const stored = injectTraceContext(withVersionHeader({ ...m.headers }, m.version));
    checkPublishable(m, stored);
    return JSON.stringify(stored);
  });
}
