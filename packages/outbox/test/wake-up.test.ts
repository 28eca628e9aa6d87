// Waking the relay (migration 9's insert trigger + wake-up.ts): producers notify only while a relay
// sleeps, a producer that commits while the relay goes to sleep still wakes it, a relay that died
// leaves nothing behind, and rows inserted by hand or by old producers are relayed.
import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

// names.ts: RELAY_ASLEEP_LOCK_CLASS (internal); the trigger has the same number written in.
const ASLEEP_CLASS = 1661022995;
const channelOf = (schema: string): string => `mailroom_outbox_${schema}`.slice(0, 63);

let broker: TestBroker;
const cleanup: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  broker = await createTestBroker();
});
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step().catch(() => undefined);
});
afterAll(async () => {
  await broker?.close();
});

async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  cleanup.push(() => db.close());
  return db;
}

/** Sessions that hold the "asleep" lock of `schema` in SHARE mode (sleeping relays). */
async function sleepers(db: TestDatabase): Promise<number[]> {
  const { rows } = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_catalog.pg_locks
      WHERE locktype = 'advisory' AND classid = $1::int::oid AND objsubid = 2 AND mode = 'ShareLock' AND granted
        AND objid::bigint = (pg_catalog.hashtext($2)::bigint + 4294967296) % 4294967296`,
    [ASLEEP_CLASS, db.schema],
  );
  return rows.map((r) => r.pid);
}

/**
 * Listens on the schema's channel. `drain()` sends a marker NOTIFY from a session of its own and
 * waits for it: NOTIFYs arrive in commit order, so every one committed before is in by then.
 */
async function listenTo(db: TestDatabase): Promise<{ payloads: string[]; drain(): Promise<string[]> }> {
  const client = new pg.Client({ connectionString: db.databaseUrl });
  client.on('error', () => undefined);
  await client.connect();
  cleanup.push(() => client.end());
  const payloads: string[] = [];
  client.on('notification', (n) => payloads.push(n.payload ?? ''));
  await client.query(`LISTEN "${channelOf(db.schema)}"`);
  let markers = 0;
  return {
    payloads,
    async drain() {
      const marker = `marker-${++markers}`;
      await db.pool.query('SELECT pg_catalog.pg_notify($1, $2)', [channelOf(db.schema), marker]);
      await vi.waitFor(() => expect(payloads).toContain(marker), { timeout: 5000, interval: 5 });
      const before = payloads.splice(0);
      return before.filter((p) => p !== marker);
    },
  };
}

function eventType(db: TestDatabase, exchange: string) {
  return defineMessage(`wake.event.${db.schema}`, z.object({ n: z.number() }), { exchange });
}

async function commitOne(db: TestDatabase, message: Parameters<typeof enqueue>[1]): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, message, { schema: db.schema });
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

function startRelay(db: TestDatabase, extra: Partial<Parameters<typeof createRelay>[0]> = {}): Relay {
  const relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 60_000, ...extra });
  cleanup.push(() => relay.stop());
  return relay;
}

it('a producer sends no NOTIFY while no relay sleeps, and one while a relay sleeps', async () => {
  const db = await database();
  const exchange = broker.name('quiet');
  const Event = eventType(db, exchange);
  const listener = await listenTo(db);

  await commitOne(db, Event.create({ n: 1 }));
  expect(await listener.drain()).toEqual([]);

  // A session holding the lock in SHARE mode is what a sleeping relay looks like.
  const asleep = await db.pool.connect();
  cleanup.push(async () => asleep.release(true));
  await asleep.query('SELECT pg_catalog.pg_advisory_lock_shared($1, pg_catalog.hashtext($2))', [ASLEEP_CLASS, db.schema]);
  await commitOne(db, Event.create({ n: 2 }));
  expect(await listener.drain()).toEqual(['']);

  // Rolled back: its NOTIFY goes with it.
  const client = await db.pool.connect();
  await client.query('BEGIN');
  await enqueue(client, Event.create({ n: 3 }), { schema: db.schema });
  await client.query('ROLLBACK');
  client.release();
  expect(await listener.drain()).toEqual([]);
});

it('a relay that died leaves nothing behind: producers stop notifying, the next relay is woken', async () => {
  const db = await database();
  const exchange = broker.name('dead');
  const queue = await broker.queueFor(exchange, '#');
  const Event = eventType(db, exchange);
  const received = broker.collect(queue);
  cleanup.push(() => received.stop());
  const listener = await listenTo(db);
  const first = startRelay(db);
  await first.start();
  await vi.waitFor(async () => expect(await sleepers(db)).toHaveLength(1), { timeout: 10_000, interval: 10 });
  const [pid] = await sleepers(db);
  // The relay's LISTEN connection dies under it, as with a killed process: its lock goes too.
  await db.pool.query('SELECT pg_catalog.pg_terminate_backend($1)', [pid]);
  await vi.waitFor(async () => expect(await sleepers(db)).toEqual([]), { timeout: 10_000, interval: 10 });
  await commitOne(db, Event.create({ n: 1 }));
  expect(await listener.drain()).toEqual([]);

  // Another relay goes to sleep and is woken at the next commit.
  const second = startRelay(db);
  await second.start();
  await vi.waitFor(async () => expect(await sleepers(db)).toHaveLength(1), { timeout: 10_000, interval: 10 });
  const message = Event.create({ n: 2 });
  await commitOne(db, message);
  await vi.waitFor(() => expect(received.ids()).toContain(message.messageId), { timeout: 5000, interval: 10 });
});

it('a producer that inserted before the relay went to sleep and commits while it settles still wakes it', async () => {
  const db = await database();
  const exchange = broker.name('race');
  const queue = await broker.queueFor(exchange, '#');
  const Event = eventType(db, exchange);
  const received = broker.collect(queue);
  cleanup.push(() => received.stop());
  const listener = await listenTo(db);

  // The producer inserts while no relay sleeps (so its trigger sends nothing) and keeps its
  // transaction open across the relay's start and its going to sleep.
  const producer = await db.pool.connect();
  cleanup.push(async () => producer.release(true));
  const message = Event.create({ n: 1 });
  await producer.query('BEGIN');
  await enqueue(producer, message, { schema: db.schema });

  const relay = startRelay(db);
  await relay.start();
  // The relay has taken its lock and now waits for the transactions open at that moment, this
  // producer's among them (its LISTEN session keeps asking whether they are still running).
  await vi.waitFor(async () => expect(await sleepers(db)).toHaveLength(1), { timeout: 10_000, interval: 2 });
  const [pid] = await sleepers(db);
  await vi.waitFor(
    async () => {
      const { rows } = await db.pool.query<{ query: string }>('SELECT query FROM pg_catalog.pg_stat_activity WHERE pid = $1', [pid]);
      expect(rows[0]?.query).toContain('pg_visible_in_snapshot');
    },
    { timeout: 5000, interval: 2 },
  );
  await producer.query('COMMIT');
  // No NOTIFY came from this producer: only the relay's settling wait can bring the row out.
  expect(await listener.drain()).toEqual([]);
  // Polling once a minute: a second or so means the relay saw the commit while settling.
  await vi.waitFor(() => expect(received.ids()).toContain(message.messageId), { timeout: 5000, interval: 10 });
});

it('rows inserted by hand, or by producers that notify themselves, are relayed at commit', async () => {
  const db = await database();
  const exchange = broker.name('hand');
  const queue = await broker.queueFor(exchange, '#');
  const received = broker.collect(queue);
  cleanup.push(() => received.stop());
  const relay = startRelay(db);
  await relay.start();
  await vi.waitFor(async () => expect(await sleepers(db)).toHaveLength(1), { timeout: 10_000, interval: 10 });

  const insert = `INSERT INTO "${db.schema}".outbox (message_id, type, exchange, routing_key, payload) VALUES ($1, 'hand.made', $2, 'hand.made', '{}')`;
  const byHand = '6f1c1a39-6a5e-4d51-8f25-0d1e4d3c2a01';
  await db.pool.query(insert, [byHand, exchange]);
  await vi.waitFor(() => expect(received.ids()).toContain(byHand), { timeout: 5000, interval: 10 });

  // An old producer: its own pg_notify in the transaction, as enqueue did before migration 9.
  const old = 'a9d0f4c2-1b7e-4c3a-9e58-4f2b6d7c8e02';
  const client = await db.pool.connect();
  await client.query('BEGIN');
  await client.query(insert, [old, exchange]);
  await client.query('SELECT pg_catalog.pg_notify($1, $2)', [channelOf(db.schema), '']);
  await client.query('COMMIT');
  client.release();
  await vi.waitFor(() => expect(received.ids()).toContain(old), { timeout: 5000, interval: 10 });
});
