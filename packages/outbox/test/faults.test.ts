import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { DEAD_LETTER_REASON, defineMessage, type OutgoingMessage } from '@mailroom/core';
import { createRelay, enqueue, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, startTcpProxy, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount } from './relay-process.js';

let broker: TestBroker;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  broker = await createTestBroker();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await broker?.close();
});

async function setup(relayOptions: Partial<Parameters<typeof createRelay>[0]> = {}): Promise<{ db: TestDatabase; relay: Relay; add: (m: OutgoingMessage[]) => Promise<void> }> {
  const db = await createTestDatabase();
  const relay = createRelay({
    database: db.databaseUrl,
    amqp: testUrls().amqpUrl,
    schema: db.schema,
    pollIntervalMs: 100,
    retryInitialDelayMs: 100,
    retryMaxDelayMs: 400,
    publishTimeoutMs: 3000,
    ...relayOptions,
  });
  cleanups.push(() => db.close(), () => relay.stop());
  return {
    db,
    relay,
    async add(messages) {
      const client = await db.pool.connect();
      await client.query('BEGIN');
      await enqueue(client, messages, { schema: db.schema });
      await client.query('COMMIT');
      client.release();
    },
  };
}

const Event = (exchange: string, routingKey?: string) =>
  defineMessage('fault.event', z.object({ n: z.number() }), routingKey === undefined ? { exchange } : { exchange, routingKey });

/** The outbox rows of `ids` still waiting: their attempts and last error. */
async function waiting(db: TestDatabase, ids: string[]): Promise<Array<{ message_id: string; attempts: number; last_error: string | null }>> {
  const result = await db.pool.query(`SELECT message_id, attempts, last_error FROM "${db.schema}".outbox WHERE message_id = ANY($1::uuid[])`, [ids]);
  return result.rows as Array<{ message_id: string; attempts: number; last_error: string | null }>;
}

/** Whether the dead letters hold `messageId` (with `reason`, when given). */
async function isDeadLetter(db: TestDatabase, messageId: string, reason?: string): Promise<boolean> {
  const result = await db.pool.query(`SELECT 1 FROM "${db.schema}".dead_letters WHERE message_id = $1 AND ($2::text IS NULL OR reason = $2)`, [
    messageId,
    reason ?? null,
  ]);
  return (result.rowCount ?? 0) === 1;
}

const WAIT = { timeout: 30_000, interval: 50 };

describe('broker faults', () => {
  it('a nacked publish stays in the outbox, is retried with backoff and published once the queue has room', async () => {
    const exchange = broker.name('nack');
    // A full queue with reject-publish overflow makes RabbitMQ nack the publish.
    const queue = await broker.queueFor(exchange, '#', { 'x-max-length': 5, 'x-overflow': 'reject-publish' });
    const { db, relay, add } = await setup();
    const messages = Array.from({ length: 20 }, (_, n) => Event(exchange).create({ n }));
    await relay.start();
    await add(messages);
    // The state in the database, not a counter: a counter may move before its batch committed.
    await vi.waitFor(async () => {
      const rows = await waiting(db, messages.map((m) => m.messageId));
      expect(rows.length).toBe(15);
      for (const row of rows) {
        expect(row.attempts).toBeGreaterThanOrEqual(1);
        expect(row.last_error).toMatch(/nack/);
      }
    }, WAIT);
    // Stats count a batch once its COMMIT returned, a moment after its rows became visible.
    await vi.waitFor(() => expect(relay.stats.nacked).toBeGreaterThanOrEqual(15), WAIT);
    // Heal: a consumer frees the queue, the retries get through.
    const received = broker.collect(queue);
    await received.waitForCount(20);
    await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), WAIT);
    expect(new Set(received.ids())).toEqual(new Set(messages.map((m) => m.messageId)));
    await received.stop();
  });

  it('an unroutable row is retried while other rows flow, published once a binding exists, and dead-lettered past its limit', async () => {
    const exchange = broker.name('unroutable');
    const routed = await broker.queueFor(exchange, 'routed.#');
    const { db, relay, add } = await setup({ maxUnroutableAttempts: 4 });
    const deadLettered: Array<{ messageId: string; reason: string }> = [];
    relay.on('deadLettered', (d) => deadLettered.push(d));
    const late = Event(exchange, 'late.bound').create({ n: 1 });
    const never = Event(exchange, 'never.bound').create({ n: 2 });
    await relay.start();
    await add([late, never]);
    // Both were returned at least once: each is waiting with an attempt counted, or already dead.
    await vi.waitFor(async () => {
      const rows = await waiting(db, [late.messageId, never.messageId]);
      for (const m of [late, never]) {
        const row = rows.find((r) => r.message_id === m.messageId);
        if (row === undefined) expect(await isDeadLetter(db, m.messageId)).toBe(true);
        else expect(row.attempts).toBeGreaterThanOrEqual(1);
      }
    }, WAIT);
    // Other rows keep flowing meanwhile.
    const received = broker.collect(routed);
    const flowing = Array.from({ length: 10 }, (_, n) => Event(exchange, 'routed.x').create({ n }));
    await add(flowing);
    await received.waitForCount(10);
    expect(new Set(received.ids())).toEqual(new Set(flowing.map((m) => m.messageId)));
    // The unroutable ones are still waiting (or dead), never dropped.
    const lateRow = await db.pool.query(`SELECT attempts, last_error FROM "${db.schema}".outbox WHERE message_id = $1`, [late.messageId]);
    const lateDead = await db.pool.query(`SELECT 1 FROM "${db.schema}".dead_letters WHERE message_id = $1`, [late.messageId]);
    expect((lateRow.rowCount ?? 0) + (lateDead.rowCount ?? 0)).toBe(1);

    // The one that never gets a binding becomes a dead letter with the reason.
    await vi.waitFor(async () => expect(await isDeadLetter(db, never.messageId)).toBe(true), WAIT);
    const dead = await db.pool.query(`SELECT source, reason, error, attempts, routing_key, payload FROM "${db.schema}".dead_letters WHERE message_id = $1`, [
      never.messageId,
    ]);
    expect(dead.rows[0]).toMatchObject({ source: 'relay', reason: DEAD_LETTER_REASON.unroutable, attempts: 4, routing_key: 'never.bound', payload: { n: 2 } });
    expect((dead.rows[0] as { error: string }).error).toMatch(/NO_ROUTE/);
    await vi.waitFor(() => expect(relay.stats.deadLettered).toBeGreaterThanOrEqual(1), WAIT);
    await vi.waitFor(() => expect(deadLettered).toContainEqual(expect.objectContaining({ messageId: never.messageId, reason: DEAD_LETTER_REASON.unroutable })), WAIT);
  });

  it('a row bound late is published once the binding exists', async () => {
    const exchange = broker.name('late');
    const { db, relay, add } = await setup({ maxUnroutableAttempts: 1000 });
    const late = Event(exchange, 'late.bound').create({ n: 1 });
    await relay.start();
    await add([late]);
    // Returned twice: the row is waiting with two attempts counted.
    await vi.waitFor(async () => {
      const [row] = await waiting(db, [late.messageId]);
      expect(row?.attempts).toBeGreaterThanOrEqual(2);
      expect(row?.last_error).toMatch(/NO_ROUTE/);
    }, WAIT);
    const queue = await broker.queueFor(exchange, 'late.#');
    const received = broker.collect(queue);
    await received.waitForCount(1);
    expect(received.ids()).toEqual([late.messageId]);
    await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), WAIT);
    await received.stop();
  });

  it('a row over the size limit goes straight to dead letters', async () => {
    const exchange = broker.name('big');
    await broker.queueFor(exchange, '#');
    const { db, relay, add } = await setup({ maxMessageBytes: 1024 });
    const Big = defineMessage('big.event', z.object({ blob: z.string() }), { exchange });
    const big = Big.create({ blob: 'x'.repeat(4096) });
    await relay.start();
    await add([big]);
    await vi.waitFor(async () => expect(await isDeadLetter(db, big.messageId, DEAD_LETTER_REASON.oversized)).toBe(true), WAIT);
    expect(await outboxCount(db.pool, db.schema)).toBe(0);
  });

  it('the RabbitMQ connection closed mid-batch: rows stay, and all are published after it heals', async () => {
    const exchange = broker.name('cut');
    const queue = await broker.queueFor(exchange, '#');
    const proxy = await startTcpProxy(testUrls().amqpUrl, 5672);
    cleanups.push(() => proxy.close());
    const { db, relay, add } = await setup({ amqp: proxy.url(testUrls().amqpUrl), batchSize: 100, concurrency: 1 });
    const failures: string[] = [];
    relay.on('failure', (f) => failures.push(f.error));
    const Padded = defineMessage('fault.padded', z.object({ n: z.number(), pad: z.string() }), { exchange });
    const messages = Array.from({ length: 3000 }, (_, n) => Padded.create({ n, pad: 'p'.repeat(1000) }));
    await add(messages);
    const received = broker.collect(queue);
    // The link goes down while the relay is writing publishes: in the middle of a batch.
    const wentDown = proxy.downAfterUpstreamBytes(500_000);
    await relay.start();
    await wentDown;
    const leftAtCut = await outboxCount(db.pool, db.schema);
    expect(leftAtCut).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 700));
    expect(relay.ready).toBe(false);
    proxy.setDown(false);
    await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 45_000, interval: 50 });
    await vi.waitFor(() => expect(new Set(received.ids()).size).toBe(messages.length), WAIT);
    expect(new Set(received.ids())).toEqual(new Set(messages.map((m) => m.messageId)));
    // The batch in flight failed (and was retried), it was not silently lost.
    expect(relay.stats.failed).toBeGreaterThan(0);
    expect(failures.length + relay.stats.failed).toBeGreaterThan(0);
    await received.stop();
  });
});
