import { DEFAULT_SCHEMA, MailroomError, isUuid, type OutgoingMessage, type Queryable } from '@mailroom/core';
import { SpanKind, contractOf, injectTraceContext, quoteIdentifier, transactionExecutor, withSpan } from '@mailroom/core/internal';
import { keyLockClass, notifyChannel } from './names.js';

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
 * contract again here, so a payload changed after `create` cannot slip through. Events
 * with a key take a transaction-scoped lock on that key first, so two transactions that enqueue
 * the same key get ids in commit order and the relay can publish a key in id order. The trace
 * context of the active span is stored with each event, and the relay is notified at commit.
 */
export async function enqueue(tx: Queryable, messages: OutgoingMessage | readonly OutgoingMessage[], options: EnqueueOptions = {}): Promise<void> {
  const list = (Array.isArray(messages) ? messages : [messages]) as readonly OutgoingMessage[];
  if (list.length === 0) return;
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const table = `${quoteIdentifier(schema)}.outbox`;
  const db = transactionExecutor(tx, 'enqueue');
  // Validated again here: a payload may have been changed since `create`.
  const payloads = list.map((m) => {
    checkMessage(m);
    const contract = contractOf(m);
    return JSON.stringify(contract === undefined ? m.payload : contract.parse(m.payload));
  });

  await withSpan(
    'mailroom enqueue',
    { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'rabbitmq', 'messaging.batch.message_count': list.length } },
    async () => {
      const keys = [...new Set(list.map((m) => m.key).filter((k): k is string => k !== null))];
      if (keys.length > 0) {
        // Sorted so two transactions that share keys always lock them in the same order.
        await db.query(
          `SELECT count(pg_advisory_xact_lock($1::int, h)) FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest($2::text[]) AS k ORDER BY 1) s`,
          [keyLockClass(schema), keys],
        );
      }
      await db.query(
        `WITH inserted AS (
           INSERT INTO ${table} (message_id, type, exchange, routing_key, key, headers, payload, occurred_at)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::timestamptz[])
           RETURNING 1
         )
         SELECT pg_notify($9, '') FROM (SELECT 1 FROM inserted LIMIT 1) AS any_row`,
        [
          list.map((m) => m.messageId),
          list.map((m) => m.type),
          list.map((m) => m.exchange),
          list.map((m) => m.routingKey),
          list.map((m) => m.key),
          list.map((m) => JSON.stringify(injectTraceContext({ ...m.headers }))),
          payloads,
          list.map((m) => m.occurredAt),
          notifyChannel(schema),
        ],
      );
    },
  );
}

function checkMessage(m: OutgoingMessage): void {
  const problem =
    typeof m !== 'object' || m === null
      ? 'it is not an object'
      : !isUuid(m.messageId)
        ? `messageId ${JSON.stringify(m.messageId)} is not a UUID`
        : typeof m.type !== 'string' || m.type === ''
          ? 'type is missing'
          : typeof m.exchange !== 'string' || typeof m.routingKey !== 'string'
            ? 'exchange or routingKey is missing'
            : m.payload === undefined
              ? 'payload is undefined'
              : !(m.occurredAt instanceof Date) || Number.isNaN(m.occurredAt.getTime())
                ? 'occurredAt is not a valid Date'
                : undefined;
  if (problem !== undefined) {
    throw new MailroomError('INVALID_MESSAGE', `Cannot enqueue message: ${problem}. Build messages with contract.create(payload).`);
  }
}
