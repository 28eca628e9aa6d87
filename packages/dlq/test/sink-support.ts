// Helpers of the dead-letter sink tests: a schema and a broker prefix per file, the seal of the
// schema, and dead-letter copies written by core's codec exactly as a consumer publishes them.
import { randomUUID } from 'node:crypto';
import type { ConfirmChannel } from 'amqplib';
import { DEAD_LETTER_REASON, type DeadLetterReason } from '@mailroom/core';
import { decodeDelivery, encodeDeadLetterCopy, envelopeHeaders, loadEnvelopeSeal, toExecutor, type EnvelopeSeal } from '@mailroom/core/internal';
import { createTestBroker, createTestDatabase, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

export interface SinkEnv {
  db: TestDatabase;
  broker: TestBroker;
  publisher: ConfirmChannel;
  seal: EnvelopeSeal;
  /** The dead-letter exchange and queue of this file. */
  topology: { exchange: string; queue: string };
  cleanup(): Promise<void>;
}

/** A migrated schema, a broker prefix, the schema's seal and a confirm channel to publish with. */
export async function setupSinkEnv(): Promise<SinkEnv> {
  const db = await createTestDatabase();
  const broker = await createTestBroker();
  const publisher = await broker.connection.createConfirmChannel();
  publisher.on('error', () => undefined);
  const seal = await loadEnvelopeSeal(toExecutor(db.pool), db.schema);
  const topology = { exchange: broker.name('dead'), queue: broker.name('dead') };
  return {
    db,
    broker,
    publisher,
    seal,
    topology,
    async cleanup() {
      const ch = await broker.connection.createChannel();
      for (const q of [topology.queue, `${topology.queue}.parked`]) await ch.deleteQueue(q).catch(() => undefined);
      await ch.deleteExchange(topology.exchange).catch(() => undefined);
      await ch.close().catch(() => undefined);
      await publisher.close().catch(() => undefined);
      await broker.close();
      await db.close();
    },
  };
}

/** The message a consumer of queue `source` received, before it gave up on it. */
export interface Original {
  body?: Buffer;
  messageId?: string;
  type?: string;
  key?: string;
  headers?: Record<string, unknown>;
  exchange?: string;
  routingKey?: string;
}

/** The dead-letter copy a consumer of `source` publishes (sealed with `seal` when given). */
export function deadLetterCopy(
  original: Original,
  options: { seal?: EnvelopeSeal; source?: string; reason?: DeadLetterReason; error?: string; attempt?: number } = {},
): { body: Buffer; properties: ReturnType<typeof encodeDeadLetterCopy> } {
  const body = original.body ?? Buffer.from(JSON.stringify({ orderId: randomUUID(), total: 1 }));
  const headers = { ...envelopeHeaders({ key: original.key ?? null }), ...original.headers };
  const message = {
    content: body,
    fields: { exchange: original.exchange ?? 'orders', routingKey: original.routingKey ?? 'order.placed' },
    properties: { messageId: original.messageId ?? randomUUID(), type: original.type ?? 'order.placed', headers },
  };
  const source = options.source ?? 'billing';
  const delivery = { ...decodeDelivery(message, source), attempt: options.attempt ?? 3 };
  const verdict = { reason: options.reason ?? DEAD_LETTER_REASON.maxAttempts, error: options.error ?? 'Error: ledger locked', source };
  return { body, properties: encodeDeadLetterCopy(message, delivery, verdict, options.seal) };
}

/** Publishes copies to the dead-letter exchange and waits for the broker's confirms. */
export async function publishDeadLetters(env: SinkEnv, copies: ReadonlyArray<{ body: Buffer; properties: object }>): Promise<void> {
  for (const copy of copies) env.publisher.publish(env.topology.exchange, 'billing', copy.body, copy.properties);
  await env.publisher.waitForConfirms();
}

/** Messages ready on a queue (0 when it does not exist). */
export async function queueDepth(env: SinkEnv, queue: string): Promise<number> {
  const ch = await env.broker.connection.createChannel();
  ch.on('error', () => undefined);
  try {
    return (await ch.checkQueue(queue)).messageCount;
  } catch {
    return 0;
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/** Rows of the dead-letter table, in id order. */
export async function storedRows(env: SinkEnv): Promise<
  Array<{ message_id: string; source: string; reason: string; error: string | null; type: string | null; key: string | null; exchange: string | null; routing_key: string | null; headers: Record<string, unknown>; payload: unknown; body: Buffer | null }>
> {
  const result = await env.db.pool.query(
    `SELECT message_id::text, source, reason, error, type, key, exchange, routing_key, headers, payload, body FROM "${env.db.schema}".dead_letters ORDER BY id`,
  );
  return result.rows as never;
}
