// lingerMs: after a batch that was not full, the relay waits that long before its next claim, so
// that events committed one by one at a low rate share one batch (fewer round trips and confirms
// per event), for that much more latency.
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { commitEvent, waitUntilAsleep } from './relay-asleep.js';
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
  const commit = (n: number): Promise<string> => commitEvent(db.pool, db.schema, Event.create({ n }));
  relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, concurrency: 1, pollIntervalMs: 60_000, lingerMs: 1000 });
  const batches: number[] = [];
  relay.on('batch', (b) => {
    if (b.published > 0) batches.push(b.published);
  });
  await relay.start();
  await waitUntilAsleep(db.pool, db.schema);
  // Registering is followed by one more poll, which lingers too: let it end, so that the worker
  // sleeps and the first commit's NOTIFY is what wakes it (nothing else shows that it sleeps).
  await new Promise((r) => setTimeout(r, 2000));
  // Five transactions 30 ms apart: all within the first one's linger.
  const ids: string[] = [];
  for (let n = 0; n < 5; n++) {
    ids.push(await commit(n));
    await new Promise((r) => setTimeout(r, 30));
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
