import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount } from './relay-process.js';

const PRODUCERS = 8;
const TRANSACTIONS = 60;

let db: TestDatabase;
let broker: TestBroker;
const relays: Relay[] = [];

beforeAll(async () => {
  db = await createTestDatabase({ max: PRODUCERS + 2 });
  broker = await createTestBroker();
  await db.pool.query(`CREATE TABLE "${db.schema}".payments (id serial PRIMARY KEY, producer int NOT NULL, amount int NOT NULL)`);
});
afterAll(async () => {
  for (const r of relays) await r.stop();
  await broker?.close();
  await db?.close();
});

it('eight producers committing concurrently while two relays run: every committed id published, no rolled-back id', async () => {
  const exchange = broker.name('payments');
  const queue = await broker.queueFor(exchange, '#');
  const Paid = defineMessage('payment.made', z.object({ producer: z.number(), amount: z.number() }), { exchange });
  const received = broker.collect(queue);
  for (let i = 0; i < 2; i++) {
    const relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, batchSize: 50, pollIntervalMs: 100 });
    relays.push(relay);
    await relay.start();
  }
  const committed = new Set<string>();
  const rolledBack = new Set<string>();
  const produce = async (p: number): Promise<void> => {
    const client = await db.pool.connect();
    try {
      for (let t = 0; t < TRANSACTIONS; t++) {
        const events = Array.from({ length: 1 + (t % 3) }, (_, i) => Paid.create({ producer: p, amount: t * 10 + i }, { key: t % 4 === 0 ? `p-${p}` : null }));
        await client.query('BEGIN');
        await client.query(`INSERT INTO "${db.schema}".payments (producer, amount) VALUES ($1, $2)`, [p, t]);
        await enqueue(client, events, { schema: db.schema });
        // Roughly one transaction in five fails after its enqueue.
        if ((p * 7 + t) % 5 === 0) {
          await client.query('ROLLBACK');
          for (const e of events) rolledBack.add(e.messageId);
        } else {
          await client.query('COMMIT');
          for (const e of events) committed.add(e.messageId);
        }
      }
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => produce(p)));
  expect(rolledBack.size).toBeGreaterThan(0);
  await vi.waitFor(() => expect(new Set(received.ids()).size).toBeGreaterThanOrEqual(committed.size), { timeout: 30_000, interval: 50 });
  await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 30_000, interval: 50 });
  await new Promise((r) => setTimeout(r, 300));
  const ids = received.ids();
  expect(new Set(ids)).toEqual(committed);
  expect(ids.filter((id) => rolledBack.has(id))).toEqual([]);
  // Both relays did part of the work, and SKIP LOCKED kept them from publishing a row twice.
  expect(relays.every((r) => r.stats.published > 0)).toBe(true);
  expect(ids.length).toBe(committed.size);
  await received.stop();
});
