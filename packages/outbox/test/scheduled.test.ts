// Scheduled delivery with an in-process relay: published no earlier than its time, woken by the
// due time itself (the poll interval is set far out of reach), cancelled ones never leave, the
// metrics, and what `enqueue` / `cancelScheduled` refuse.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage, isMailroomError, type OutgoingMessage } from '@mailroom/core';
import { cancelScheduled, createRelay, enqueue, scheduledCount, type EnqueueOptions, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

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

/** Enqueues in a transaction of its own and commits. */
async function schedule(messages: OutgoingMessage | OutgoingMessage[], options: Omit<EnqueueOptions, 'schema'>): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, messages, { ...options, schema: db.schema });
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

/** cancelScheduled in a transaction of its own. */
async function cancel(messageId: string): Promise<boolean> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const removed = await cancelScheduled(client, messageId, { schema: db.schema });
    await client.query('COMMIT');
    return removed;
  } finally {
    client.release();
  }
}

async function count(table: 'outbox' | 'outbox_scheduled'): Promise<number> {
  const result = await db.pool.query(`SELECT count(*)::int AS n FROM "${db.schema}".${table}`);
  return (result.rows[0] as { n: number }).n;
}

/** A relay whose poll interval is far out of reach: whatever it publishes in time, it was woken for. */
async function startRelay(extra: { ordering?: boolean } = {}): Promise<Relay> {
  relay = createRelay({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 600_000, ...extra });
  await relay.start();
  return relay;
}

/** Arrival times (ms since the epoch) by message id, from a queue bound to `exchange`. */
async function arrivals(exchange: string): Promise<{ at: Map<string, number>; order: string[]; stop(): Promise<void> }> {
  const queue = await broker.queueFor(exchange, '#');
  const channel = await broker.connection.createChannel();
  const at = new Map<string, number>();
  const order: string[] = [];
  const { consumerTag } = await channel.consume(queue, (msg) => {
    if (msg === null) return;
    const id = String(msg.properties.messageId);
    order.push(id);
    if (!at.has(id)) at.set(id, Date.now());
    channel.ack(msg);
  });
  return {
    at,
    order,
    async stop() {
      await channel.cancel(consumerTag);
      await channel.close();
    },
  };
}

describe('scheduled delivery', () => {
  it('publishes each message no earlier than its time, woken by the due time (not the 10-minute poll)', async () => {
    const exchange = broker.name('when');
    const Tick = defineMessage('sched.tick', z.object({ n: z.number() }), { exchange });
    const received = await arrivals(exchange);
    await startRelay();
    const base = Date.now() + 600;
    const due = new Map<string, number>();
    // Out of order on purpose: each new earliest row re-arms the relay's timer (migration 11's NOTIFY).
    for (const offset of [900, 300, 1200, 0, 600, 150]) {
      const m = Tick.create({ n: offset });
      due.set(m.messageId, base + offset);
      await schedule(m, { deliverAt: new Date(base + offset) });
    }
    // Two more through `delay`, one of them a batch of three in one call.
    const delayed = [Tick.create({ n: -1 }), Tick.create({ n: -2 }), Tick.create({ n: -3 })];
    const before = Date.now();
    await schedule(delayed, { delay: 700 });
    for (const m of delayed) due.set(m.messageId, before + 700);
    expect(await count('outbox_scheduled')).toBe(9);

    await vi.waitFor(() => expect(received.at.size).toBe(9), { timeout: 10_000, interval: 20 });
    for (const [id, time] of due) {
      const arrived = received.at.get(id) as number;
      // Never early (1 ms: the broker's clock and ours are the same clock, read at ms precision).
      expect(arrived).toBeGreaterThanOrEqual(time - 1);
      // Woken for it: far sooner than the poll interval would have (10 minutes).
      expect(arrived - time).toBeLessThan(1_000);
    }
    expect(await count('outbox_scheduled')).toBe(0);
    // The lateness is observed when the publishing batch commits, which can come after the
    // consumer already has the message: wait for the metric itself.
    await vi.waitFor(
      async () => {
        const text = await (relay as Relay).metrics.render();
        expect(text).toMatch(/^mailroom_relay_scheduled_lateness_seconds_count 9$/m);
        expect(text).toMatch(/^mailroom_relay_scheduled_moved_total 9$/m);
      },
      { timeout: 5_000, interval: 20 },
    );
    await received.stop();
  });

  it('re-arms its timer when a row is scheduled before the one it waits for, and picks up at start what fell due while it was down', async () => {
    const exchange = broker.name('rearm');
    const Tick = defineMessage('sched.rearm', z.object({ n: z.number() }), { exchange });
    const received = await arrivals(exchange);
    // Due while no relay runs: published at start.
    const overdue = Tick.create({ n: 0 });
    await schedule(overdue, { deliverAt: new Date(Date.now() - 5_000) });
    const late = Tick.create({ n: 1 });
    await schedule(late, { delay: 60_000 });
    // No relay runs: the earliest is overdue, and says by how much.
    const before = await scheduledCount(db.pool, { schema: db.schema });
    expect(before.rows).toBe(2);
    expect(before.overdueSeconds).toBeGreaterThan(4.5);
    await startRelay();
    await vi.waitFor(() => expect(received.at.has(overdue.messageId)).toBe(true), { timeout: 5_000, interval: 20 });
    // The relay now sleeps until `late` (a minute away; its poll is 10 minutes away). A row due
    // sooner must wake it through the trigger's NOTIFY.
    await new Promise((r) => setTimeout(r, 200));
    const soon = Tick.create({ n: 2 });
    const dueAt = Date.now() + 300;
    await schedule(soon, { deliverAt: new Date(dueAt) });
    await vi.waitFor(() => expect(received.at.has(soon.messageId)).toBe(true), { timeout: 5_000, interval: 20 });
    expect(received.at.get(soon.messageId) as number).toBeGreaterThanOrEqual(dueAt - 1);
    expect((received.at.get(soon.messageId) as number) - dueAt).toBeLessThan(1_000);
    expect(received.at.has(late.messageId)).toBe(false);
    const waiting = await scheduledCount(db.pool, { schema: db.schema });
    expect(waiting.rows).toBe(1);
    expect(waiting.nextDeliverAt?.getTime()).toBeGreaterThan(Date.now() + 50_000);
    expect(waiting.overdueSeconds).toBe(0);
    const viaRelay = await (relay as Relay).scheduled();
    expect(viaRelay.rows).toBe(1);
    const text = await (relay as Relay).metrics.render();
    expect(text).toMatch(/^mailroom_outbox_scheduled 1$/m);
    expect(text).toMatch(/^mailroom_outbox_scheduled_overdue_seconds 0$/m);
    expect(await cancel(late.messageId)).toBe(true);
    await received.stop();
  });

  it('a cancelled message never leaves; cancelling twice, an unknown id or one already published says false', async () => {
    const exchange = broker.name('cancel');
    const Tick = defineMessage('sched.cancel', z.object({ n: z.number() }), { exchange });
    const received = await arrivals(exchange);
    await startRelay();
    const messages = Array.from({ length: 20 }, (_, n) => Tick.create({ n }));
    const at = Date.now() + 700;
    await schedule(messages, { deliverAt: new Date(at) });
    const cancelled = messages.filter((_, n) => n % 2 === 0);
    const kept = messages.filter((_, n) => n % 2 === 1);
    for (const m of cancelled) expect(await cancel(m.messageId)).toBe(true);
    for (const m of cancelled.slice(0, 3)) expect(await cancel(m.messageId)).toBe(false);
    expect(await cancel('00000000-0000-4000-8000-000000000000')).toBe(false);
    // A cancel that rolls back cancels nothing.
    const client = await db.pool.connect();
    await client.query('BEGIN');
    expect(await cancelScheduled(client, (kept[0] as OutgoingMessage).messageId, { schema: db.schema })).toBe(true);
    await client.query('ROLLBACK');
    client.release();

    await vi.waitFor(() => expect(received.at.size).toBe(kept.length), { timeout: 10_000, interval: 20 });
    // Time for a straggler to show up, were one to come.
    await new Promise((r) => setTimeout(r, 500));
    expect(new Set(received.at.keys())).toEqual(new Set(kept.map((m) => m.messageId)));
    for (const m of kept) expect(await cancel(m.messageId)).toBe(false);
    expect(await count('outbox_scheduled')).toBe(0);
    await received.stop();
  });

  it('a scheduled message whose id the outbox holds already is not sent twice, and holds up nothing', async () => {
    const exchange = broker.name('dup');
    const Tick = defineMessage('sched.dup', z.object({ n: z.number() }), { exchange });
    const received = await arrivals(exchange);
    const twice = Tick.create({ n: 1 });
    const other = Tick.create({ n: 2 });
    // Scheduled, and the same message also enqueued for now: both are waiting before the relay starts.
    await schedule([twice, other], { deliverAt: new Date(Date.now() - 1) });
    const client = await db.pool.connect();
    await client.query('BEGIN');
    await enqueue(client, twice, { schema: db.schema });
    await client.query('COMMIT');
    client.release();
    await startRelay();
    await vi.waitFor(() => expect(received.at.size).toBe(2), { timeout: 5_000, interval: 20 });
    await new Promise((r) => setTimeout(r, 300));
    expect(received.order.filter((id) => id === twice.messageId)).toHaveLength(1);
    expect(await count('outbox_scheduled')).toBe(0);
    await vi.waitFor(async () => expect(await (relay as Relay).metrics.render()).toMatch(/^mailroom_relay_scheduled_duplicates_total 1$/m), { timeout: 5_000, interval: 20 });
    await received.stop();
  });
});

describe('what enqueue and cancelScheduled refuse', () => {
  const Tick = defineMessage('sched.refused', z.object({ n: z.number() }));

  async function refused(options: Record<string, unknown>): Promise<unknown> {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const error = await enqueue(client, Tick.create({ n: 1 }), { schema: db.schema, ...(options as EnqueueOptions) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      await client.query('COMMIT');
      return error;
    } finally {
      client.release();
    }
  }

  it.each([
    ['both deliverAt and delay', { deliverAt: new Date(), delay: 10 }, /not both/],
    ['an invalid Date', { deliverAt: new Date('nope') }, /invalid Date/],
    ['a string for deliverAt', { deliverAt: '2030-01-01T00:00:00Z' }, /must be a Date/],
    ['a number for deliverAt', { deliverAt: Date.now() + 1000 }, /must be a Date/],
    ['a date before 1970', { deliverAt: new Date(-1) }, /before 1970/],
    ['a date more than 10 years ahead', { deliverAt: new Date(Date.now() + 11 * 365 * 86_400_000) }, /more than 10 years/],
    ['the largest Date', { deliverAt: new Date(8.64e15) }, /more than 10 years/],
    ['a negative delay', { delay: -1 }, /not be negative/],
    ['NaN', { delay: Number.NaN }, /finite/],
    ['Infinity', { delay: Number.POSITIVE_INFINITY }, /finite/],
    ['a delay over 10 years', { delay: 11 * 365 * 86_400_000 }, /more than 10 years/],
    ['a string delay', { delay: '1000' }, /must be a number/],
    ['a bigint delay', { delay: 1000n }, /must be a number/],
  ])('refuses %s with INVALID_MESSAGE, storing nothing', async (_what, options, message) => {
    const error = await refused(options);
    expect(isMailroomError(error, 'INVALID_MESSAGE')).toBe(true);
    expect((error as Error).message).toMatch(message);
    expect(await count('outbox_scheduled')).toBe(0);
    expect(await count('outbox')).toBe(0);
  });

  it('refuses bad options even for an empty list, and a scheduled message the outbox would refuse', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await expect(enqueue(client, [], { schema: db.schema, delay: -5 })).rejects.toMatchObject({ code: 'INVALID_MESSAGE' });
      const nul = { ...Tick.create({ n: 1 }), key: 'a\u0000b' };
      await expect(enqueue(client, nul, { schema: db.schema, delay: 10 })).rejects.toMatchObject({ code: 'INVALID_MESSAGE' });
      const forged = { ...Tick.create({ n: 1 }), headers: { 'x-mailroom-attempts': '9' } };
      await expect(enqueue(client, forged, { schema: db.schema, delay: 10 })).rejects.toMatchObject({ code: 'INVALID_MESSAGE' });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(await count('outbox_scheduled')).toBe(0);
    // Outside a transaction it would commit on its own: refused.
    await expect(enqueue(db.pool, Tick.create({ n: 1 }), { schema: db.schema, delay: 10 })).rejects.toMatchObject({ code: 'UNSUPPORTED_EXECUTOR' });
    await expect(cancelScheduled(db.pool, '00000000-0000-4000-8000-000000000000', { schema: db.schema })).rejects.toMatchObject({ code: 'UNSUPPORTED_EXECUTOR' });
  });

  it.each([
    ['not a UUID', 'order-1'],
    ['SQL', "' OR 1=1 --"],
    ['NUL', '00000000-0000-4000-8000-00000000000\u0000'],
    ['a long string', 'a'.repeat(100_000)],
    ['a number', 42],
    ['undefined', undefined],
  ])('cancelScheduled refuses %s with INVALID_MESSAGE', async (_what, id) => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const error = await cancelScheduled(client, id as string, { schema: db.schema }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isMailroomError(error, 'INVALID_MESSAGE')).toBe(true);
      expect((error as Error).message.length).toBeLessThan(200);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  });
});
