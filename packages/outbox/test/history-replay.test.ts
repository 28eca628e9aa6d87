// Must-show 1 of the archive: a consumer that joins late rebuilds its projection from the archive
// (`replayHistory` to its queue only) and ends equal, row for row, to the projection a consumer
// built live, also while new events keep arriving during the replay.
//
// The projection is order-insensitive per key: per account, the sum of the deposits, their count
// and the highest sequence number seen. The rebuilt consumer is bound to the exchange as well, so
// it gets live events while the replay runs, in an order that interleaves replayed and live ones;
// each event is applied once (its inbox dedupes the overlap), and a sum, a count and a maximum do
// not depend on the order. (A last-writer-wins projection would need the outbox id on the
// message, which the wire format does not carry.)
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createConsumer, handler, type Consumer } from '@mailroom/inbox';
import { createRelay, enqueue, listHistory, oldestArchived, readHistory, replayHistory, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let broker: TestBroker;
let relay: Relay;
let exchange: string;
const consumers: Consumer[] = [];
const WAIT = { timeout: 60_000, interval: 50 } as const;
const ACCOUNTS = 17;

const depositOf = (exchangeName: string) =>
  defineMessage('deposit.made', z.object({ account: z.string(), amount: z.number().int(), seq: z.number().int() }), { exchange: exchangeName });
let Deposit: ReturnType<typeof depositOf>;

function projectingConsumer(name: string, table: string): Consumer {
  const consumer = createConsumer({
    name: broker.name(name),
    db: db.pool,
    amqp: testUrls().amqpUrl,
    schema: db.schema,
    deadLetters: { exchange: broker.name('dead'), queue: broker.name('dead') },
    stopTimeoutMs: 5000,
    handlers: [
      handler(Deposit, async ({ payload, db: tx }) => {
        await tx.query(
          `INSERT INTO "${db.schema}".${table} (account, total, events, last_seq) VALUES ($1, $2, 1, $3)
           ON CONFLICT (account) DO UPDATE SET total = ${table}.total + EXCLUDED.total, events = ${table}.events + 1,
             last_seq = GREATEST(${table}.last_seq, EXCLUDED.last_seq)`,
          [payload.account, payload.amount, payload.seq],
        );
      }),
    ],
  });
  consumers.push(consumer);
  return consumer;
}

async function produce(from: number, count: number, perTransaction = 5): Promise<void> {
  for (let i = from; i < from + count; i += perTransaction) {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      for (let j = i; j < Math.min(i + perTransaction, from + count); j++) {
        const account = `acct-${j % ACCOUNTS}`;
        await enqueue(client, Deposit.create({ account, amount: (j * 7919) % 1000, seq: j }, { key: account }), { schema: db.schema });
      }
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }
}

async function projection(table: string): Promise<unknown[]> {
  return (await db.pool.query<Record<string, unknown>>(`SELECT account, total::text, events, last_seq FROM "${db.schema}".${table} ORDER BY account`)).rows;
}

async function eventsIn(table: string): Promise<number> {
  return Number((await db.pool.query<{ n: number }>(`SELECT coalesce(sum(events), 0)::int AS n FROM "${db.schema}".${table}`)).rows[0]?.n);
}

beforeAll(async () => {
  db = await createTestDatabase({ max: 20 });
  broker = await createTestBroker();
  exchange = broker.name('bank');
  Deposit = depositOf(exchange);
  for (const t of ['live', 'rebuilt']) {
    await db.pool.query(`CREATE TABLE "${db.schema}".${t} (account text PRIMARY KEY, total bigint NOT NULL, events int NOT NULL, last_seq int NOT NULL)`);
  }
  relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 100, archive: true });
  await relay.start();
});

afterAll(async () => {
  await Promise.all(consumers.map((c) => c.stop()));
  await relay?.stop();
  const ch = await broker.connection.createChannel();
  for (const c of consumers) for (const q of [c.queue, ...c.delayQueues]) await ch.deleteQueue(q).catch(() => undefined);
  await ch.deleteQueue(broker.name('dead')).catch(() => undefined);
  await ch.deleteExchange(broker.name('dead')).catch(() => undefined);
  await ch.deleteExchange(exchange).catch(() => undefined);
  await ch.close().catch(() => undefined);
  await broker.close();
  await db.close();
});

describe('history replay', () => {
  it('rebuilds a projection equal to the live one, row for row, while new events keep arriving', async () => {
    const live = projectingConsumer('live', 'live');
    await live.start();
    await produce(0, 300);
    await vi.waitFor(async () => expect(await eventsIn('live')).toBe(300), WAIT);
    // Every published row is in the archive, none left in the outbox: same transaction.
    await vi.waitFor(async () => {
      const { rows } = await db.pool.query(`SELECT (SELECT count(*) FROM "${db.schema}".outbox_archive)::int AS archived, (SELECT count(*) FROM "${db.schema}".outbox)::int AS waiting`);
      expect(rows[0]).toEqual({ archived: 300, waiting: 0 });
    }, WAIT);

    // The newcomer joins: bound to the exchange (live events from now on), empty projection.
    const rebuilt = projectingConsumer('rebuilt', 'rebuilt');
    await rebuilt.start();
    const during = produce(300, 200, 2);
    const progress: number[] = [];
    const result = await replayHistory({
      database: db.pool,
      amqp: testUrls().amqpUrl,
      schema: db.schema,
      queue: rebuilt.queue,
      batchSize: 50,
      // Slow enough that the events produced meanwhile reach the archive before the replay ends.
      ratePerSecond: 400,
      onProgress: (p) => progress.push(p.published),
    });
    await during;
    expect(result.published).toBeGreaterThanOrEqual(300);
    expect(result.beyondRetention).toBe(false);
    expect(progress.at(-1)).toBe(result.published);

    await vi.waitFor(async () => expect(await eventsIn('live')).toBe(500), WAIT);
    await vi.waitFor(async () => expect(await eventsIn('rebuilt')).toBe(500), WAIT);
    // Every replayed and every live delivery was handled once or deduped; some were both (overlap).
    await vi.waitFor(() => expect(rebuilt.stats.handled + rebuilt.stats.duplicates).toBe(result.published + 200), WAIT);
    expect(rebuilt.stats.handled).toBe(500);
    expect(rebuilt.stats.duplicates).toBeGreaterThan(0);
    expect(await projection('rebuilt')).toEqual(await projection('live'));
    expect((await projection('live')).length).toBe(ACCOUNTS);
    // The live consumer saw none of the replay: it went to one queue only.
    expect(live.stats.handled).toBe(500);
    expect(live.stats.duplicates).toBe(0);
  });

  it('gives an existing consumer only what it lacks: its inbox dedupes the rest', async () => {
    const live = consumers[0] as Consumer;
    const before = await projection('live');
    const result = await replayHistory({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema, queue: live.queue });
    expect(result.published).toBe(500);
    await vi.waitFor(() => expect(live.stats.duplicates).toBe(500), WAIT);
    expect(await projection('live')).toEqual(before);
  });

  it('keeps each key in outbox order on the queue, with the original message ids and headers', async () => {
    const ch = await broker.connection.createChannel();
    const queue = broker.name('plain');
    await ch.assertQueue(queue, { durable: false, autoDelete: false });
    const key = 'acct-3';
    const result = await replayHistory({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema, queue, key, ratePerSecond: 2000 });
    const expected = (await db.pool.query<{ id: string }>(`SELECT message_id::text AS id FROM "${db.schema}".outbox_archive WHERE key = $1 ORDER BY outbox_id`, [key])).rows.map((r) => r.id);
    expect(result.published).toBe(expected.length);
    const got: string[] = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (m === false) break;
      got.push(String(m.properties.messageId));
      expect(m.properties.headers?.['x-mailroom-key']).toBe(key);
      expect(m.properties.type).toBe('deposit.made');
    }
    expect(got).toEqual(expected);
    await ch.deleteQueue(queue);
    await ch.close();
  });

  it('says when --since is older than what the archive holds, and refuses a queue that does not exist', async () => {
    const oldest = await oldestArchived(db.pool, { schema: db.schema });
    expect(oldest).toBeInstanceOf(Date);
    const ch = await broker.connection.createChannel();
    const queue = broker.name('empty');
    await ch.assertQueue(queue, { durable: false });
    const result = await replayHistory({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema, queue, since: new Date(Date.now() - 30 * 86_400_000), type: 'no.such.type' });
    expect(result).toMatchObject({ published: 0, beyondRetention: true });
    await ch.deleteQueue(queue);
    await ch.close();
    await expect(replayHistory({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema, queue: broker.name('absent') })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    await expect(replayHistory({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema, queue: 'a\u0000b' })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
  });

  it('archives nothing with the archive off (the default), and nothing that became a dead letter', async () => {
    await relay.stop();
    relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 100 });
    await relay.start();
    await produce(500, 10);
    await vi.waitFor(async () => expect(await eventsIn('live')).toBe(510), WAIT);
    await relay.stop();
    // A row over maxMessageBytes becomes a dead letter at once.
    relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 100, archive: true, maxMessageBytes: 2048 });
    await relay.start();
    const big = Deposit.create({ account: 'acct-big', amount: 1, seq: 9999 }, { key: 'acct-big' });
    const client = await db.pool.connect();
    try {
      // Made too big in the transaction that enqueues it: the relay never sees it small.
      await client.query('BEGIN');
      await enqueue(client, big, { schema: db.schema });
      await client.query(`UPDATE "${db.schema}".outbox SET payload = jsonb_set(payload, '{pad}', to_jsonb(repeat('x', 4096))) WHERE message_id = $1`, [big.messageId]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await vi.waitFor(async () => {
      const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${db.schema}".dead_letters WHERE message_id = $1`, [big.messageId]);
      expect(rows[0]?.n).toBe(1);
    }, WAIT);
    const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${db.schema}".outbox_archive`);
    expect(rows[0]?.n).toBe(500);
  });

  it('lists and shows archived events by key, type and message id; hostile input is refused', async () => {
    const page = await listHistory(db.pool, { schema: db.schema, key: 'acct-5', limit: 3 });
    expect(page).toHaveLength(3);
    expect(Number(page[0]?.outboxId)).toBeGreaterThan(Number(page[1]?.outboxId));
    expect(page.every((e) => e.key === 'acct-5' && e.type === 'deposit.made' && e.exchange === exchange)).toBe(true);
    const shown = await readHistory(db.pool, page[0]?.messageId as string, { schema: db.schema });
    expect(shown).toEqual(page[0]);
    expect(await readHistory(db.pool, '00000000-0000-4000-8000-000000000000', { schema: db.schema })).toBeUndefined();
    await expect(readHistory(db.pool, "x' OR 1=1 --", { schema: db.schema })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    await expect(listHistory(db.pool, { schema: db.schema, key: 'a\u0000' })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    await expect(listHistory(db.pool, { schema: db.schema, limit: 0 })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    expect(await listHistory(db.pool, { schema: db.schema, type: 'deposit.made', since: new Date(Date.now() + 86_400_000) })).toEqual([]);
  });
});
