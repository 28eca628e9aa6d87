// Scheduled delivery across relay crashes, with real relay processes (`mailroom relay`, the built
// CLI) killed with SIGKILL: nothing early, nothing lost, nothing cancelled ever leaves.
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage, type OutgoingMessage } from '@mailroom/core';
import { cancelScheduled, enqueue } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { moverLockClass } from '../src/names.js';
import { startRelayProcess, type RelayProcess } from './relay-process.js';

let db: TestDatabase;
let broker: TestBroker;
const relays: RelayProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  for (const r of relays) r.kill('SIGKILL');
  await broker?.close();
  await db?.close();
});

async function inTransaction<T>(fn: (client: import('pg').PoolClient) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } finally {
    client.release();
  }
}

async function scheduledLeft(): Promise<number> {
  const result = await db.pool.query(`SELECT count(*)::int AS n FROM "${db.schema}".outbox_scheduled`);
  return (result.rows[0] as { n: number }).n;
}

/** First arrival time of each message id, and every arrival in order. */
async function arrivals(exchange: string): Promise<{ first: Map<string, number>; all: string[]; stop(): Promise<void> }> {
  const queue = await broker.queueFor(exchange, '#');
  const channel = await broker.connection.createChannel();
  const first = new Map<string, number>();
  const all: string[] = [];
  const { consumerTag } = await channel.consume(queue, (msg) => {
    if (msg === null) return;
    const id = String(msg.properties.messageId);
    all.push(id);
    if (!first.has(id)) first.set(id, Date.now());
    channel.ack(msg);
  });
  return {
    first,
    all,
    async stop() {
      await channel.cancel(consumerTag);
      await channel.close();
    },
  };
}

/**
 * How `relay` exited, or an error after `ms` that says what it printed: a relay that hangs fails
 * this test with its own story, not with the test's timeout.
 */
async function exitOf(relay: RelayProcess, what: string, ms = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no exit within ${ms} ms; the relay printed:\n${relay.output()}`)), ms);
  });
  try {
    return await Promise.race([relay.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

it('a relay killed after locking due scheduled rows moves nothing; the next one moves and publishes them', async () => {
  const exchange = broker.name('lock');
  const Tick = defineMessage('sched.crash.lock', z.object({ n: z.number() }), { exchange });
  const received = await arrivals(exchange);
  const messages = Array.from({ length: 30 }, (_, n) => Tick.create({ n }, { key: `k${n % 3}` }));
  await inTransaction((c) => enqueue(c, messages, { schema: db.schema, deliverAt: new Date(Date.now() - 1000) }));

  const first = startRelayProcess(db.schema, { MAILROOM_CRASH_POINTS: 'relay.scheduled-after-lock' });
  relays.push(first);
  expect((await exitOf(first, 'the relay armed with relay.scheduled-after-lock')).signal).toBe('SIGKILL');
  expect(first.output()).toContain('crash point relay.scheduled-after-lock reached');
  // Its transaction died with it: the rows are still scheduled, none left.
  expect(await scheduledLeft()).toBe(30);
  expect(received.first.size).toBe(0);

  const second = startRelayProcess(db.schema, { MAILROOM_POLL_INTERVAL_MS: '60000' });
  relays.push(second);
  await vi.waitFor(() => expect(received.first.size, `the second relay printed:\n${second.output()}`).toBe(30), { timeout: 20_000, interval: 50 });
  expect(await scheduledLeft()).toBe(0);
  second.kill('SIGTERM');
  expect((await exitOf(second, 'the second relay after SIGTERM')).code).toBe(0);
  expect(received.all).toHaveLength(30);
  await received.stop();
});

it('a relay killed with SIGKILL in the middle of a schedule and restarted: nothing early, nothing lost, no cancelled one leaves', async () => {
  const exchange = broker.name('mid');
  const Tick = defineMessage('sched.crash.mid', z.object({ n: z.number() }), { exchange });
  const received = await arrivals(exchange);
  const env = { MAILROOM_POLL_INTERVAL_MS: '60000' };
  const first = startRelayProcess(db.schema, env);
  relays.push(first);
  await first.port();

  // 200 messages due over the next 3 s (from 1 s on), each its own time, in random order.
  const start = Date.now() + 1_000;
  const due = new Map<string, number>();
  const messages: OutgoingMessage[] = [];
  for (let n = 0; n < 200; n++) {
    const m = Tick.create({ n }, { key: n % 2 === 0 ? `k${n % 7}` : null });
    messages.push(m);
    due.set(m.messageId, start + Math.floor(Math.random() * 3_000));
  }
  await inTransaction(async (c) => {
    for (const m of messages) await enqueue(c, m, { schema: db.schema, deliverAt: new Date(due.get(m.messageId) as number) });
  });
  // Every fifth is cancelled before it is due.
  const cancelled = new Set(messages.filter((_, n) => n % 5 === 0).map((m) => m.messageId));
  const removed = await inTransaction(async (c) => {
    let n = 0;
    for (const id of cancelled) if (await cancelScheduled(c, id, { schema: db.schema })) n++;
    return n;
  });
  expect(removed).toBe(cancelled.size);

  // Killed in the middle of the schedule, restarted at once.
  await new Promise((r) => setTimeout(r, Math.max(0, start + 1_500 - Date.now())));
  const before = received.first.size;
  first.kill('SIGKILL');
  expect((await first.exited).signal).toBe('SIGKILL');
  const second = startRelayProcess(db.schema, env);
  relays.push(second);
  await second.port();

  const expected = messages.filter((m) => !cancelled.has(m.messageId)).map((m) => m.messageId);
  await vi.waitFor(() => expect(received.first.size).toBe(expected.length), { timeout: 20_000, interval: 50 });
  // Some were published before the kill and some after it.
  expect(before).toBeGreaterThan(0);
  expect(before).toBeLessThan(expected.length);
  await new Promise((r) => setTimeout(r, 500));
  expect(new Set(received.first.keys())).toEqual(new Set(expected));
  for (const id of expected) expect(received.first.get(id) as number).toBeGreaterThanOrEqual((due.get(id) as number) - 1);
  for (const id of cancelled) expect(received.all).not.toContain(id);
  expect(await scheduledLeft()).toBe(0);
  second.kill('SIGTERM');
  expect((await second.exited).code).toBe(0);
  await received.stop();
});

it('two relays: one moves, the other stands by; the mover killed with SIGKILL mid-schedule, the standby takes over at once', async () => {
  const exchange = broker.name('standby');
  const Tick = defineMessage('sched.crash.standby', z.object({ n: z.number() }), { exchange });
  const received = await arrivals(exchange);
  const env = (name: string): Record<string, string> => ({ MAILROOM_POLL_INTERVAL_MS: '60000', MAILROOM_RELAY_NAME: name });
  const byName = new Map<string, RelayProcess>();
  for (const name of ['relay-a', 'relay-b']) {
    const relay = startRelayProcess(db.schema, env(name));
    relays.push(relay);
    byName.set(name, relay);
  }
  await Promise.all([...byName.values()].map((r) => r.port()));
  // Who holds the mover lock (a session advisory lock): exactly one relay.
  const movers = async (): Promise<string[]> => {
    const result = await db.pool.query(
      `SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid AND l.objid = 0 AND l.objsubid = 2`,
      [moverLockClass(db.schema)],
    );
    return (result.rows as Array<{ name: string }>).map((r) => r.name);
  };
  await vi.waitFor(async () => expect(await movers()).toHaveLength(1), { timeout: 10_000, interval: 50 });

  const start = Date.now() + 500;
  const due = new Map<string, number>();
  const messages = Array.from({ length: 150 }, (_, n) => {
    const m = Tick.create({ n });
    due.set(m.messageId, start + n * 20);
    return m;
  });
  await inTransaction(async (c) => {
    for (const m of messages) await enqueue(c, m, { schema: db.schema, deliverAt: new Date(due.get(m.messageId) as number) });
  });
  await new Promise((r) => setTimeout(r, Math.max(0, start + 1_500 - Date.now())));
  const [moverName] = await movers();
  const mover = byName.get(moverName as string) as RelayProcess;
  mover.kill('SIGKILL');
  const killedAt = Date.now();
  await mover.exited;
  // The standby holds the lock now.
  await vi.waitFor(async () => expect(await movers()).toEqual([[...byName.keys()].find((n) => n !== moverName)]), { timeout: 5_000, interval: 20 });

  await vi.waitFor(() => expect(received.first.size).toBe(150), { timeout: 20_000, interval: 50 });
  for (const m of messages) {
    const at = due.get(m.messageId) as number;
    const arrived = received.first.get(m.messageId) as number;
    expect(arrived).toBeGreaterThanOrEqual(at - 1);
    // Due after the kill: taken over long before the standby's 60 s poll would have found them.
    if (at > killedAt) expect(arrived - at).toBeLessThan(2_000);
  }
  expect(await scheduledLeft()).toBe(0);
  await received.stop();
});
