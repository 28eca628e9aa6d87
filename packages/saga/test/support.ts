// Helpers shared by the saga tests: a migrated schema, a broker prefix, a confirmed publisher that
// writes mailroom's wire format, and consumers running a saga's steps.
import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, Options } from 'amqplib';
import type { MessageContract, Queryable } from '@mailroom/core';
import { envelopeHeaders } from '@mailroom/core/internal';
import { createConsumer, type Consumer, type ConsumerOptions, type DeadLetteredInfo } from '@mailroom/inbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

export interface Env {
  db: TestDatabase;
  broker: TestBroker;
  publisher: ConfirmChannel;
  exchange: string;
  consumers: Consumer[];
  cleanup(): Promise<void>;
}

/** How long the tests wait for a state by default. */
export const WAIT = { timeout: 30_000, interval: 50 } as const;

/** A schema, a broker prefix, a confirm channel and a topic exchange for the test's messages. */
export async function setupEnv(options: { max?: number } = {}): Promise<Env> {
  const db = await createTestDatabase({ max: options.max ?? 20 });
  const broker = await createTestBroker();
  const publisher = await broker.connection.createConfirmChannel();
  const exchange = broker.name('events');
  await publisher.assertExchange(exchange, 'topic', { durable: true });
  const consumers: Consumer[] = [];
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

/** Publishes a message like the relay does (confirmed). Returns its message id. */
export async function publish(
  env: Env,
  contract: MessageContract,
  payload: unknown,
  options: { messageId?: string; type?: string; routingKey?: string; raw?: Buffer } = {},
): Promise<string> {
  const messageId = options.messageId ?? randomUUID();
  const props: Options.Publish = {
    messageId,
    type: options.type ?? contract.type,
    contentType: 'application/json',
    persistent: true,
    timestamp: Math.floor(Date.now() / 1000),
    headers: envelopeHeaders({ key: null }),
  };
  const body = options.raw ?? Buffer.from(JSON.stringify(payload));
  await new Promise<void>((resolve, reject) => {
    env.publisher.publish(contract.exchange, options.routingKey ?? contract.routingKey, body, props, (err: unknown) =>
      err ? reject(err instanceof Error ? err : new Error('publish nacked')) : resolve(),
    );
  });
  return messageId;
}

/** What a consumer did, as its events tell. */
export interface Recorded {
  handled: string[];
  retrying: Array<{ messageId: string; error: string }>;
  deadLettered: DeadLetteredInfo[];
}

/** A consumer on the test schema and prefix, with its events recorded; stopped by `env.cleanup()`. */
export function consumerFor<TTx = Queryable>(env: Env, options: Pick<ConsumerOptions<TTx>, 'handlers'> & Partial<ConsumerOptions<TTx>>): { consumer: Consumer; recorded: Recorded } {
  const consumer = createConsumer<TTx>({
    name: env.broker.name(`c${env.consumers.length}`),
    db: env.db.pool,
    amqp: testUrls().amqpUrl,
    schema: env.db.schema,
    deadLetters: { exchange: env.broker.name('dead'), queue: env.broker.name('dead') },
    retry: { maxAttempts: 3, initialDelayMs: 100, multiplier: 2 },
    retention: { cleanupIntervalMs: 0 },
    stopTimeoutMs: 5000,
    ...options,
  });
  const recorded: Recorded = { handled: [], retrying: [], deadLettered: [] };
  consumer.on('handled', (m) => recorded.handled.push(m.messageId));
  consumer.on('retrying', (r) => recorded.retrying.push({ messageId: r.message.messageId, error: r.error }));
  consumer.on('deadLettered', (d) => recorded.deadLettered.push(d));
  env.consumers.push(consumer);
  return { consumer, recorded };
}

/** The instance row of a saga, or undefined. */
export async function instanceRow(env: Env, saga: string, id: string): Promise<{ status: string; state: unknown; version: string; completed_at: Date | null } | undefined> {
  const result = await env.db.pool.query<{ status: string; state: unknown; version: string; completed_at: Date | null }>(
    `SELECT status, state, version::text AS version, completed_at FROM "${env.db.schema}".sagas WHERE saga = $1 AND id = $2`,
    [saga, id],
  );
  return result.rows[0];
}

/** The history rows of an instance, in order. */
export async function historyRows(env: Env, saga: string, id: string): Promise<Array<{ message_id: string; message_type: string; outcome: string; from_version: string; to_version: string; from_state: unknown; to_state: unknown }>> {
  const result = await env.db.pool.query<{ message_id: string; message_type: string; outcome: string; from_version: string; to_version: string; from_state: unknown; to_state: unknown }>(
    `SELECT message_id::text, message_type, outcome, from_version::text, to_version::text, from_state, to_state FROM "${env.db.schema}".saga_history WHERE saga = $1 AND instance_id = $2 ORDER BY seq`,
    [saga, id],
  );
  return result.rows;
}
