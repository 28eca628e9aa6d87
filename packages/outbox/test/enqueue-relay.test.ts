import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { defineMessage, MailroomError } from '@mailroom/core';
import { deliveryKey, occurredAtOfMessage } from '@mailroom/core/internal';
import { createRelay, enqueue, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let broker: TestBroker;
let relay: Relay;
let exchange: string;
let OrderPlaced: ReturnType<typeof contract>;

function contract(exchangeName: string) {
  return defineMessage('order.placed', z.object({ orderId: z.string(), total: z.number() }), { exchange: exchangeName });
}

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
  exchange = broker.name('orders');
  OrderPlaced = contract(exchange);
  await db.pool.query(`CREATE TABLE "${db.schema}".orders (id text PRIMARY KEY, total numeric NOT NULL)`);
  relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 200 });
});

afterAll(async () => {
  await relay?.stop();
  await broker?.close();
  await db?.close();
});

describe('enqueue + relay, pg', () => {
  it('publishes exactly the events of committed transactions, with the outbox message id as messageId', async () => {
    const queue = await broker.queueFor(exchange, 'order.#');
    const received = broker.collect(queue);
    await relay.start();

    const committed: string[] = [];
    const rolledBack: string[] = [];
    const client = await db.pool.connect();
    try {
      for (let i = 0; i < 10; i++) {
        const message = OrderPlaced.create({ orderId: `o-${i}`, total: i }, { key: `o-${i}` });
        await client.query('BEGIN');
        await client.query(`INSERT INTO "${db.schema}".orders (id, total) VALUES ($1, $2)`, [`o-${i}`, i]);
        await enqueue(client, message, { schema: db.schema });
        if (i % 3 === 0) {
          await client.query('ROLLBACK');
          rolledBack.push(message.messageId);
        } else {
          await client.query('COMMIT');
          committed.push(message.messageId);
        }
      }
    } finally {
      client.release();
    }
    await received.waitForCount(committed.length);
    await vi.waitFor(async () => expect((await relay.backlog()).rows).toBe(0), { timeout: 30_000, interval: 50 });
    // A little longer, so a late wrong publish would be seen.
    await new Promise((r) => setTimeout(r, 300));
    expect(received.ids().sort()).toEqual([...committed].sort());
    for (const id of rolledBack) expect(received.ids()).not.toContain(id);
    const first = received.messages[0];
    if (first === undefined) throw new Error('no message received');
    expect(first.properties.type).toBe('order.placed');
    expect(first.properties.contentType).toBe('application/json');
    expect(first.fields.routingKey).toBe('order.placed');
    expect(deliveryKey(first)).toMatch(/^o-\d$/);
    expect(JSON.parse(first.content.toString())).toMatchObject({ orderId: expect.any(String) as string });
    // When the event happened travels as the AMQP timestamp (whole seconds), not as a header: an
    // event without producer headers carries its key and nothing else.
    expect(Object.keys(first.properties.headers ?? {})).toEqual(['x-mailroom-key']);
    const occurred = occurredAtOfMessage(first.properties);
    expect(occurred).toBeInstanceOf(Date);
    expect(Math.abs((occurred?.getTime() ?? 0) - Date.now())).toBeLessThan(60_000);
    expect(first.properties.timestamp).toBe((occurred?.getTime() ?? 0) / 1000);
    await received.stop();
  });

  it('refuses to enqueue outside a transaction handle, and refuses an invalid message', async () => {
    const message = OrderPlaced.create({ orderId: 'x', total: 1 });
    await expect(enqueue(db.pool, message, { schema: db.schema })).rejects.toThrowError(/inside the caller's transaction/);
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await expect(enqueue(client, { ...message, messageId: 'not-a-uuid' }, { schema: db.schema })).rejects.toThrowError(MailroomError);
      // A payload changed after create() is validated against its contract again.
      const changed = OrderPlaced.create({ orderId: 'y', total: 2 });
      (changed.payload as { total: unknown }).total = 'two';
      await expect(enqueue(client, changed, { schema: db.schema })).rejects.toThrowError(/Invalid payload for message type "order.placed": total/);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });
});

describe('enqueue + relay, kysely', () => {
  it('publishes the events of a committed kysely transaction and none of a rolled-back one', async () => {
    const queue = await broker.queueFor(exchange, 'order.placed');
    const received = broker.collect(queue);
    const kdb = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: db.databaseUrl, max: 2 }) }) });
    try {
      const ok = [OrderPlaced.create({ orderId: 'k-1', total: 1 }), OrderPlaced.create({ orderId: 'k-2', total: 2 })];
      await kdb.transaction().execute(async (trx) => {
        await enqueue(trx, ok, { schema: db.schema });
      });
      const bad = OrderPlaced.create({ orderId: 'k-3', total: 3 });
      await expect(
        kdb.transaction().execute(async (trx) => {
          await enqueue(trx, bad, { schema: db.schema });
          throw new Error('domain check failed');
        }),
      ).rejects.toThrowError('domain check failed');
      await expect(enqueue(kdb, bad, { schema: db.schema })).rejects.toThrowError(/kysely Transaction/);
      await received.waitForCount(2);
      await new Promise((r) => setTimeout(r, 300));
      expect(received.ids().sort()).toEqual(ok.map((m) => m.messageId).sort());
    } finally {
      await received.stop();
      await kdb.destroy();
    }
  });
});
