// What a scheduled message does to the order of its key (ordering mode), as the outbox README
// states it: it does not hold up its key while it waits; it takes its place in the key's order
// when it falls due, after every message of its key committed (or still committing) by then;
// scheduled messages of one key that fall due together go in due-time order, then enqueue order.
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage, type OutgoingMessage } from '@mailroom/core';
import { createRelay, enqueue, type EnqueueOptions, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { keyLockSlot } from '../src/key-lock.js';

let db: TestDatabase;
let broker: TestBroker;
let relay: Relay | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterEach(async () => {
  await relay?.stop();
  relay = undefined;
});
afterAll(async () => {
  await broker?.close();
  await db?.close();
});

async function commit(messages: OutgoingMessage | OutgoingMessage[], options: Omit<EnqueueOptions, 'schema'> = {}): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, messages, { ...options, schema: db.schema });
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

async function startRelay(): Promise<Relay> {
  // Ordering on; the poll interval out of reach, so only the wake-ups move things.
  relay = createRelay({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema, ordering: true, leaseHeartbeatMs: 200, pollIntervalMs: 600_000 });
  await relay.start();
  await vi.waitFor(() => expect((relay as Relay).leasedPartitions().length).toBe(64), { timeout: 10_000, interval: 20 });
  return relay;
}

/** The ids received on a queue bound to `exchange`, in arrival order (`ids` is read afresh each time). */
async function collect(exchange: string): Promise<{ readonly ids: string[]; stop(): Promise<void> }> {
  const queue = await broker.queueFor(exchange, '#');
  const received = broker.collect(queue);
  return {
    get ids() {
      return received.ids();
    },
    stop: () => received.stop(),
  };
}

it('a scheduled message does not hold up its key while it waits', async () => {
  const exchange = broker.name('nohold');
  const Step = defineMessage('sched.step', z.object({ s: z.string() }), { exchange });
  const received = await collect(exchange);
  await startRelay();
  const a = Step.create({ s: 'a' }, { key: 'k1' });
  const b = Step.create({ s: 'b' }, { key: 'k1' });
  const c = Step.create({ s: 'c' }, { key: 'k1' });
  await commit(a, { delay: 1_200 });
  await commit(b);
  await commit(c);
  await vi.waitFor(() => expect(received.ids).toEqual([b.messageId, c.messageId]), { timeout: 5_000, interval: 20 });
  await vi.waitFor(() => expect(received.ids).toEqual([b.messageId, c.messageId, a.messageId]), { timeout: 5_000, interval: 20 });
  await received.stop();
});

it('falls due behind a message of its key whose transaction is still open, and holds up no other key', async () => {
  const exchange = broker.name('behind');
  const Step = defineMessage('sched.behind', z.object({ s: z.string() }), { exchange });
  const received = await collect(exchange);
  await startRelay();
  const key = 'k-open';
  // A key in another lock slot: it must not wait for the open transaction.
  let other = 'k-other-0';
  for (let i = 1; keyLockSlot(other) === keyLockSlot(key); i++) other = `k-other-${i}`;
  const due = Date.now() + 300;
  const scheduled = Step.create({ s: 'scheduled' }, { key });
  const elsewhere = Step.create({ s: 'elsewhere' }, { key: other });
  await commit([scheduled, elsewhere], { deliverAt: new Date(due) });

  // A producer enqueues to the same key before the scheduled one is due, and commits late.
  const producer = await db.pool.connect();
  const open = Step.create({ s: 'open' }, { key });
  try {
    await producer.query('BEGIN');
    await enqueue(producer, open, { schema: db.schema });
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now()) + 700));
    // The other key's message went at its time; the scheduled one waits behind the open transaction.
    expect(received.ids).toEqual([elsewhere.messageId]);
    await producer.query('COMMIT');
  } finally {
    // A failed expectation must not leave the transaction open (it would hold the schema's drop).
    await producer.query('ROLLBACK').catch(() => undefined);
    producer.release();
  }
  await vi.waitFor(() => expect(received.ids).toEqual([elsewhere.messageId, open.messageId, scheduled.messageId]), { timeout: 5_000, interval: 20 });
  await received.stop();
});

it('takes its place when it falls due: after the rows of its key already waiting, scheduled ones in due order', async () => {
  const exchange = broker.name('place');
  const Step = defineMessage('sched.place', z.object({ s: z.string() }), { exchange });
  const received = await collect(exchange);
  // All of these wait before the relay starts; the scheduled ones are due by then.
  const now = Date.now();
  const dueSecond = Step.create({ s: 'due second' }, { key: 'k2' });
  const dueFirst = Step.create({ s: 'due first' }, { key: 'k2' });
  const pair = [Step.create({ s: 'pair 1' }, { key: 'k2' }), Step.create({ s: 'pair 2' }, { key: 'k2' })];
  await commit(dueSecond, { deliverAt: new Date(now - 100) });
  await commit(dueFirst, { deliverAt: new Date(now - 200) });
  await commit(pair, { deliverAt: new Date(now - 50) });
  // Enqueued last, but in the outbox already: it goes first.
  const plain = Step.create({ s: 'plain' }, { key: 'k2' });
  await commit(plain);
  await startRelay();
  const expected = [plain, dueFirst, dueSecond, ...pair].map((m) => m.messageId);
  await vi.waitFor(() => expect(received.ids).toEqual(expected), { timeout: 5_000, interval: 20 });
  await received.stop();
});
