// The per-key enqueue lock: producers that share keys, ordering on. A key's ids must follow the
// commit order of its transactions, or the ordered relay publishes a later event first.
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount } from './relay-process.js';

const KEYS = 12;
/** How long the first transaction of each key stays open after its enqueue. */
const HOLD_MS = 400;

let db: TestDatabase;
let broker: TestBroker;
let relay: Relay | undefined;

beforeAll(async () => {
  db = await createTestDatabase({ max: 2 * KEYS + 2 });
  broker = await createTestBroker();
});
afterAll(async () => {
  await relay?.stop();
  await broker?.close();
  await db?.close();
});

it('a key enqueued by two transactions is published in commit order, the later one waiting for the earlier', async () => {
  const exchange = broker.name('keylock');
  const queue = await broker.queueFor(exchange, '#');
  const Step = defineMessage('key.step', z.object({ key: z.string(), seq: z.number().int() }), { exchange });
  const received = broker.collect(queue);
  relay = createRelay({
    database: db.databaseUrl,
    amqp: testUrls().amqpUrl,
    schema: db.schema,
    ordering: true,
    partitions: 8,
    pollIntervalMs: 100,
    leaseHeartbeatMs: 100,
  });
  await relay.start();
  // The relay holds every partition before the producers begin, so it publishes what is committed at once.
  await vi.waitFor(() => expect(relay?.leasedPartitions()).toHaveLength(8), { timeout: 15_000, interval: 20 });

  // Per key: A enqueues seq 1 and stays open; B enqueues seq 2 after A's insert and commits at
  // once. With the lock B's enqueue waits until A committed, so B's row gets the later id and
  // becomes visible after A's. Without it, B commits first and the relay publishes it while
  // A's row is still invisible: seq 2 before seq 1.
  const pair = async (key: string): Promise<void> => {
    const a = await db.pool.connect();
    const b = await db.pool.connect();
    try {
      await a.query('BEGIN');
      await enqueue(a, Step.create({ key, seq: 1 }, { key }), { schema: db.schema });
      const second = (async () => {
        await b.query('BEGIN');
        await enqueue(b, Step.create({ key, seq: 2 }, { key }), { schema: db.schema });
        await b.query('COMMIT');
      })();
      await new Promise((r) => setTimeout(r, HOLD_MS));
      await a.query('COMMIT');
      await second;
    } finally {
      a.release();
      b.release();
    }
  };
  const keys = Array.from({ length: KEYS }, (_, k) => `k-${k}`);
  await Promise.all(keys.map((key) => pair(key)));

  await vi.waitFor(() => expect(new Set(received.ids()).size).toBe(2 * KEYS), { timeout: 30_000, interval: 20 });
  await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 30_000, interval: 20 });
  const order = new Map<string, number[]>(keys.map((k) => [k, []]));
  for (const m of received.messages) {
    const { key, seq } = JSON.parse(m.content.toString()) as { key: string; seq: number };
    order.get(key)?.push(seq);
  }
  expect(Object.fromEntries(order)).toEqual(Object.fromEntries(keys.map((k) => [k, [1, 2]])));
  await received.stop();
});
