import { DEFAULT_SCHEMA, type OutgoingMessage, type Queryable } from '@mailroom/core';
import { SpanKind, contractOf, injectTraceContext, quoteIdentifier, transactionExecutor, withSpan } from '@mailroom/core/internal';
import { KEY_LOCK_SQL, keyLockSlots } from './key-lock.js';
import { keyLockClass } from './names.js';
import { checkOutgoingMessage, checkPublishable } from './outgoing-check.js';

/** Options of {@link enqueue}. */
export interface EnqueueOptions {
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
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
  if (list.length === 0) return;
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const table = `${quoteIdentifier(schema)}.outbox`;
  const db = transactionExecutor(tx, 'enqueue');
  // Validated again here: a payload may have been changed since `create`.
  const payloads = list.map((m) => {
    checkOutgoingMessage(m);
    const contract = contractOf(m);
    return JSON.stringify(contract === undefined ? m.payload : contract.parse(m.payload));
  });

  await withSpan(
    'mailroom enqueue',
    { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'rabbitmq', 'messaging.batch.message_count': list.length } },
    async () => {
      const headers = list.map((m) => {
        const stored = injectTraceContext({ ...m.headers });
        checkPublishable(m, stored);
        return JSON.stringify(stored);
      });
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
