// lingerMs: after a batch that was not full, the relay waits that long before its next claim, so
// that events committed one by one at a low rate share one batch (fewer round trips and confirms
// per event), for that much more latency.
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { waitUntilAsleep } from './relay-asleep.js';
import { outboxCount } from './relay-process.js';

let db: TestDatabase;
let broker: TestBroker;
let relay: Relay | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  await relay?.stop();
  await broker?.close();
  await db?.close();
});

it('gathers events committed one by one during the linger into one batch, and still delivers each', async () => {
  const exchange = broker.name('linger');
  const queue = await broker.queueFor(exchange, '#');
  const Event = defineMessage('linger.event', z.object({ n: z.number() }), { exchange });
  const received = broker.collect(queue);
  relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, concurrency: 1, pollIntervalMs: 60_000, lingerMs: 1000 });
  const batches: number[] = [];
  relay.on('batch', (b) => {
    if (b.published > 0) batches.push(b.published);
  });
  await relay.start();
  await waitUntilAsleep(db.pool, db.schema);
  // Registering is followed by one more poll, which lingers too: let it end, so that the worker
  // sleeps and the first commit's NOTIFY is what wakes it (nothing else shows that it sleeps).
  await new Promise((r) => setTimeout(r, 2500));
  // Five transactions, their events written beforehand, committed 30 ms apart: all within the
  // first one's linger. Without waiting for the disk (synchronous_commit off): on a loaded
  // machine an fsync can stall for a second, and what this test times is the relay's linger.
  const clients = await Promise.all(Array.from({ length: 5 }, () => db.pool.connect()));
  const ids: string[] = [];
  try {
    for (const [n, client] of clients.entries()) {
      await client.query('BEGIN; SET LOCAL synchronous_commit = off');
      const event = Event.create({ n });
      await enqueue(client, event, { schema: db.schema });
      ids.push(event.messageId);
    }
    for (const client of clients) {
      await client.query('COMMIT');
      await new Promise((r) => setTimeout(r, 30));
    }
  } finally {
    for (const client of clients) client.release();
  }
  await vi.waitFor(() => expect(received.ids()).toEqual(expect.arrayContaining(ids)), { timeout: 10_000, interval: 20 });
  await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 10_000, interval: 20 });
  expect(batches).toEqual([5]);
  await received.stop();
});

it('refuses a linger that is negative, fractional or over a second, naming the option', () => {
  for (const lingerMs of [-1, 1.5, 1001]) {
    expect(() => createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, lingerMs })).toThrow(/lingerMs/);
  }
});
