// A relay that runs for days must not grow with the batches it ran: at a low rate every event is a
// batch of its own (woken by NOTIFY), so anything a batch leaves attached to a long-lived object
// (the relay's stop promise, its abort signal) adds up to hundreds of MB a day. Counted here as
// live promises (after a full GC) before and after a few hundred single-event batches.
import { queryObjects } from 'node:v8';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { commitEvent, waitUntilAsleep } from './relay-asleep.js';

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

const livePromises = (): number => queryObjects(Promise, { format: 'count' });

it('keeps no promise per batch: the live promises do not grow with the batches run', async () => {
  const exchange = broker.name('memory');
  const queue = await broker.queueFor(exchange, '#');
  const Event = defineMessage('memory.event', z.object({ n: z.number() }), { exchange });
  const received = broker.collect(queue);
  relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, concurrency: 2, pollIntervalMs: 60_000 });
  let batches = 0;
  relay.on('batch', (b) => {
    if (b.published > 0) batches++;
  });
  await relay.start();
  await waitUntilAsleep(db.pool, db.schema);
  // One event at a time, each waited for: every one is a batch (and a wake-up) of its own.
  const oneByOne = async (from: number, count: number): Promise<void> => {
    for (let n = from; n < from + count; n++) {
      const id = await commitEvent(db.pool, db.schema, Event.create({ n }));
      await vi.waitFor(() => expect(received.ids()).toContain(id), { timeout: 10_000, interval: 1 });
    }
  };
  // Warm-up: the channel, the pool's connections, the lazily built objects.
  await oneByOne(0, 50);
  const before = livePromises();
  const batchesBefore = batches;
  const count = 400;
  await oneByOne(50, count);
  await vi.waitFor(() => expect(batches - batchesBefore).toBeGreaterThanOrEqual(count / 2), { timeout: 10_000, interval: 5 });
  const grown = livePromises() - before;
  // A promise kept per batch would show as `count` or more.
  expect(grown, `live promises grew by ${grown} over ${batches - batchesBefore} batches`).toBeLessThan(count / 4);
  await received.stop();
});
