// The relay wakes at commit: the NOTIFY that the outbox's insert trigger sends while a relay sleeps,
// not the poll timer, brings an event out.
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

it('a relay polling once a minute still delivers a committed event within a second', async () => {
  const exchange = broker.name('notify');
  const queue = await broker.queueFor(exchange, '#');
  const Event = defineMessage('notify.event', z.object({ n: z.number() }), { exchange });
  const received = broker.collect(queue);
  const commit = (n: number): Promise<string> => commitEvent(db.pool, db.schema, Event.create({ n }));

  // A row waiting before the start is claimed by the first batch, which every start runs.
  const before = await commit(0);
  relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 60_000 });
  await relay.start();
  await vi.waitFor(() => expect(received.ids()).toContain(before), { timeout: 10_000, interval: 20 });
  await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 10_000, interval: 20 });
  // The relay registers as asleep (the "asleep" advisory lock, see migration 9) only when its last
  // busy worker goes to sleep: from then on every worker's next poll is a minute away, and only
  // the NOTIFY that the outbox's insert trigger sends at commit can bring the event out.
  await waitUntilAsleep(db.pool, db.schema);

  const committedAt = Date.now();
  const after = await commit(1);
  await vi.waitFor(() => expect(received.ids()).toContain(after), { timeout: 1000, interval: 10 });
  expect(Date.now() - committedAt).toBeLessThan(1000);
  await received.stop();
});
