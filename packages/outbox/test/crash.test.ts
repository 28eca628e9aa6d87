import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount, startRelayProcess } from './relay-process.js';

let db: TestDatabase;
let broker: TestBroker;

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  await broker?.close();
  await db?.close();
});

it('a relay killed after the broker confirmed a batch but before its commit loses nothing', async () => {
  const exchange = broker.name('crash');
  const queue = await broker.queueFor(exchange, '#');
  const Event = defineMessage('crash.event', z.object({ n: z.number() }), { exchange });
  const messages = Array.from({ length: 50 }, (_, n) => Event.create({ n }));
  const client = await db.pool.connect();
  await client.query('BEGIN');
  await enqueue(client, messages, { schema: db.schema });
  await client.query('COMMIT');
  client.release();

  const first = startRelayProcess(db.schema, { MAILROOM_BATCH_SIZE: '20', MAILROOM_CONCURRENCY: '1', MAILROOM_CRASH_POINTS: 'relay.after-confirm-before-commit' });
  const exit = await first.exited;
  expect(exit.signal).toBe('SIGKILL');
  expect(first.output()).toContain('crash point relay.after-confirm-before-commit reached');

  // The batch was confirmed by the broker: its 20 messages are in the queue ...
  const check = await broker.channel.checkQueue(queue);
  expect(check.messageCount).toBe(20);
  // ... and, the commit never having happened, all 50 rows are still in the outbox.
  expect(await outboxCount(db.pool, db.schema)).toBe(50);

  const second = startRelayProcess(db.schema, { MAILROOM_BATCH_SIZE: '20' });
  // The restarted relay drains the outbox.
  await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 30_000, interval: 50 });
  second.kill('SIGTERM');
  expect((await second.exited).code).toBe(0);

  const received = broker.collect(queue);
  await received.waitForCount(70);
  await new Promise((r) => setTimeout(r, 300));
  const ids = received.ids();
  // Every event of the batch arrived; the crashed batch arrived twice, nothing else did.
  expect(new Set(ids)).toEqual(new Set(messages.map((m) => m.messageId)));
  expect(ids).toHaveLength(70);
  await received.stop();
});
