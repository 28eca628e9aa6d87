// Helpers shared by the inbox tests: a consumer wired to a test schema and a test broker prefix,
// a confirmed publisher that writes mailroom's wire format (through core's codec), a dead-letter
// sink for the tests that read the store, and an effects table to count on.
import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, GetMessage, Options } from 'amqplib';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { envelopeHeaders } from '@mailroom/core/internal';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler, type Consumer, type ConsumerOptions, type HandlerFunction } from '@mailroom/inbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

export interface Env {
  db: TestDatabase;
  broker: TestBroker;
  publisher: ConfirmChannel;
  exchange: string;
  consumers: Array<Pick<Consumer, 'stop' | 'queue' | 'delayQueues'>>;
  cleanup(): Promise<void>;
}

/** A schema, a broker prefix, a confirm channel and an effects table without a unique key. */
export async function setupEnv(): Promise<Env> {
  const db = await createTestDatabase({ max: 30 });
  const broker = await createTestBroker();
  const publisher = await broker.connection.createConfirmChannel();
  const exchange = broker.name('events');
  await publisher.assertExchange(exchange, 'topic', { durable: true });
  await db.pool.query(`CREATE TABLE "${db.schema}".effects (message_id uuid NOT NULL, note text, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  const consumers: Env['consumers'] = [];
  return {
    db,
    broker,
    publisher,
    exchange,
    consumers,
    async cleanup() {
      await Promise.all(consumers.map((c) => c.stop()));
      const ch = await broker.connection.createChannel();
      for (const c of consumers) {
        for (const q of [c.queue, ...c.delayQueues]) await ch.deleteQueue(q).catch(() => undefined);
      }
      await ch.deleteQueue(broker.name('dead')).catch(() => undefined);
      await ch.deleteExchange(broker.name('dead')).catch(() => undefined);
      await ch.deleteExchange(exchange).catch(() => undefined);
      await ch.close().catch(() => undefined);
      await broker.close();
      await db.close();
    },
  };
}

export const OrderPlaced = (exchange: string) =>
  defineMessage('order.placed', z.object({ orderId: z.string(), total: z.number() }), { exchange });

/** Counts rows of the effects table, optionally for one message. */
export async function effects(env: Env, messageId?: string): Promise<number> {
  const result = await env.db.pool.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM "${env.db.schema}".effects ${messageId ? 'WHERE message_id = $1' : ''}`,
    messageId ? [messageId] : [],
  );
  return Number(result.rows[0]?.n ?? 0);
}

/** Counts rows of the effects table with one note (what one test's handler wrote). */
export async function effectsNoted(env: Env, note: string): Promise<number> {
  const result = await env.db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${env.db.schema}".effects WHERE note = $1`, [note]);
  return Number(result.rows[0]?.n ?? 0);
}

/** A handler that records one effect row in the handler transaction. */
export function recordEffect(schema: string): HandlerFunction<{ orderId: string; total: number }> {
  return async ({ db, message }) => {
    await db.query(`INSERT INTO "${schema}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, `attempt ${message.attempt}`]);
  };
}

/**
 * Publishes like the relay does (confirmed); extra properties override. `exchange: ''` with
 * `routingKey: <queue>` publishes through the default exchange straight to a queue (the route a
 * delay queue's copies come back by).
 */
export async function publish(
  env: Env,
  payload: unknown,
  options: { messageId?: string | null; type?: string | null; exchange?: string; routingKey?: string; raw?: Buffer; headers?: Record<string, unknown>; key?: string } = {},
): Promise<string> {
  const messageId = options.messageId === undefined ? randomUUID() : options.messageId;
  const props: Options.Publish = {
    contentType: 'application/json',
    persistent: true,
    timestamp: Math.floor(Date.now() / 1000),
    headers: { ...envelopeHeaders({ key: options.key ?? null }), ...options.headers },
  };
  if (messageId !== null) props.messageId = messageId;
  const type = options.type === undefined ? 'order.placed' : options.type;
  if (type !== null) props.type = type;
  const body = options.raw ?? Buffer.from(JSON.stringify(payload));
  await new Promise<void>((resolve, reject) => {
    env.publisher.publish(options.exchange ?? env.exchange, options.routingKey ?? type ?? 'order.placed', body, props, (err: unknown) => (err ? reject(err instanceof Error ? err : new Error('publish nacked')) : resolve()));
  });
  return messageId ?? '';
}

/** A consumer on the test schema and prefix; stopped by `env.cleanup()`. */
export function consumerFor(
  env: Env,
  handle: HandlerFunction<{ orderId: string; total: number }>,
  overrides: Partial<ConsumerOptions> = {},
): Consumer {
  const consumer = createConsumer({
    name: env.broker.name(`c${env.consumers.length}`),
    db: env.db.pool,
    amqp: testUrls().amqpUrl,
    schema: env.db.schema,
    handlers: [handler(OrderPlaced(env.exchange), handle)],
    deadLetters: deadLetterTopology(env),
    stopTimeoutMs: 5000,
    ...overrides,
  });
  env.consumers.push(consumer);
  return consumer;
}

/** How long the tests wait for a state (rows in the database, messages on a queue) by default. */
export const WAIT = { timeout: 30_000, interval: 50 } as const;

/** The test's dead-letter exchange and queue (no sink: dead letters wait on the queue). */
export function deadLetterTopology(env: Env): { exchange: string; queue: string } {
  return { exchange: env.broker.name('dead'), queue: env.broker.name('dead') };
}

/**
 * The dead-letter options of a consumer whose dead letters the test reads from the store: the
 * test topology and a sink from @mailroom/dlq, which the consumer starts and stops.
 */
export function withDeadLetterSink(env: Env): NonNullable<ConsumerOptions['deadLetters']> {
  const topology = deadLetterTopology(env);
  return { ...topology, sink: createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology }) };
}

/** Rows of the dead-letter table. */
export async function deadLetters(env: Env): Promise<Array<{ message_id: string; reason: string; error: string; attempts: number; type: string | null; payload: unknown; body: Buffer | null; source: string }>> {
  const result = await env.db.pool.query(`SELECT message_id::text, reason, error, attempts, type, payload, body, source FROM "${env.db.schema}".dead_letters ORDER BY id`);
  return result.rows as Array<{ message_id: string; reason: string; error: string; attempts: number; type: string | null; payload: unknown; body: Buffer | null; source: string }>;
}

/** Takes every message waiting in the test's dead-letter queue (no sink: the copies the consumer published). */
export async function takeDeadLetterCopies(env: Env): Promise<GetMessage[]> {
  const ch = await env.broker.connection.createChannel();
  try {
    const out: GetMessage[] = [];
    for (;;) {
      const message = await ch.get(deadLetterTopology(env).queue, { noAck: true });
      if (message === false) return out;
      out.push(message);
    }
  } finally {
    await ch.close();
  }
}

/** How many messages wait in a queue (unacked deliveries not included). */
export async function queueDepth(env: Env, queue: string): Promise<number> {
  const ch = await env.broker.connection.createChannel();
  try {
    return (await ch.checkQueue(queue)).messageCount;
  } finally {
    await ch.close();
  }
}
