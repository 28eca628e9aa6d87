import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createConsumer, handler } from '@mailroom/inbox';
import { testUrls } from '../../../test/helpers.js';
import { OrderPlaced, WAIT, consumerFor, deadLetterTopology, deadLetters, effects, publish, setupEnv, withDeadLetterSink, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

describe('consumer options', () => {
  it('runs on kysely: the handler gets the kysely Transaction, duplicates are deduped', async () => {
    const contract = OrderPlaced(env.exchange);
    const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool: env.db.pool }) });
    const consumer = createConsumer<Transaction<Record<string, never>>>({
      name: env.broker.name('kysely'),
      db,
      amqp: testUrls().amqpUrl,
      schema: env.db.schema,
      deadLetters: deadLetterTopology(env),
      handlers: [
        handler<typeof contract, Transaction<Record<string, never>>>(contract, async ({ tx, message }) => {
          expect(tx.isTransaction).toBe(true);
          await sql`INSERT INTO ${sql.table(`${env.db.schema}.effects`)} (message_id, note) VALUES (${message.messageId}, 'kysely')`.execute(tx);
        }),
      ],
    });
    env.consumers.push(consumer);
    await consumer.start();
    const id = await publish(env, { orderId: 'k-1', total: 1 });
    await publish(env, { orderId: 'k-1', total: 1 }, { messageId: id });
    await vi.waitFor(async () => {
      expect(await effects(env, id)).toBe(1);
      expect(consumer.stats).toMatchObject({ handled: 1, duplicates: 1 });
    }, WAIT);
    await consumer.stop();
  });

  it('a handler that swallows a database error is retried, never acked as handled with nothing committed', async () => {
    const consumer = consumerFor(
      env,
      async ({ db, message }) => {
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'swallow')`, [message.messageId]);
        if (message.attempt === 1) await db.query('SELECT 1/0').catch(() => undefined);
      },
      { retry: { maxAttempts: 3, initialDelayMs: 100 } },
    );
    await consumer.start();
    const id = await publish(env, { orderId: 's-1', total: 1 });
    await vi.waitFor(async () => {
      expect(await effects(env, id)).toBe(1);
      expect(consumer.stats).toMatchObject({ handled: 1, retries: 1, failures: 1 });
    }, WAIT);
    await consumer.stop();
  });

  it('a deferred constraint that fails at COMMIT follows the retry policy and ends in dead letters, no requeue loop', async () => {
    await env.db.pool.query(
      `CREATE TABLE "${env.db.schema}".deferred (v int, CONSTRAINT v_unique UNIQUE (v) DEFERRABLE INITIALLY DEFERRED); INSERT INTO "${env.db.schema}".deferred VALUES (1)`,
    );
    const consumer = consumerFor(
      env,
      async ({ db }) => {
        await db.query(`INSERT INTO "${env.db.schema}".deferred VALUES (1)`);
      },
      { retry: { maxAttempts: 2, initialDelayMs: 100 }, deadLetters: withDeadLetterSink(env) },
    );
    await consumer.start();
    const id = await publish(env, { orderId: 'd-1', total: 1 });
    await vi.waitFor(async () => expect((await deadLetters(env)).map((d) => d.message_id), 'the dead letter').toContain(id), WAIT);
    expect(consumer.stats).toMatchObject({ handled: 0, failures: 2, retries: 1, deadLettered: 1, requeued: 0 });
    expect((await deadLetters(env)).find((d) => d.message_id === id)).toMatchObject({ reason: 'max-attempts', attempts: 2 });
    await consumer.stop();
  });

  it('a retry copy returned as unroutable (delay queue deleted) is not acked; the topology is declared again', async () => {
    const consumer = consumerFor(
      env,
      async ({ db, message }) => {
        if (message.attempt === 1) throw new Error('first attempt fails');
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'unroutable')`, [message.messageId]);
      },
      { retry: { maxAttempts: 3, initialDelayMs: 100 } },
    );
    let subscribed = 0;
    consumer.on('subscribed', () => (subscribed += 1));
    await consumer.start();
    const ch = await env.broker.connection.createChannel();
    for (const q of consumer.delayQueues) await ch.deleteQueue(q);
    await ch.close();
    const id = await publish(env, { orderId: 'u-1', total: 1 });
    await vi.waitFor(async () => {
      expect(await effects(env, id), 'the message handled after the topology came back').toBe(1);
      expect(consumer.stats.handled).toBe(1);
    }, WAIT);
    expect(consumer.stats.requeued).toBeGreaterThanOrEqual(1);
    expect(subscribed).toBeGreaterThanOrEqual(2);
    await consumer.stop();
  });

  it('a listener that throws changes nothing: each message still has one effect and is acked once', async () => {
    const consumer = consumerFor(env, async ({ db, message }) => {
      await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'listener')`, [message.messageId]);
    });
    consumer.on('handled', () => {
      throw new Error('a buggy listener');
    });
    let subscribed = 0;
    consumer.on('subscribed', () => (subscribed += 1));
    await consumer.start();
    const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => publish(env, { orderId: `l-${i}`, total: i })));
    await vi.waitFor(async () => {
      for (const id of ids) expect(await effects(env, id)).toBe(1);
      expect(consumer.stats.handled).toBe(20);
    }, WAIT);
    await sleep(300);
    expect(consumer.stats).toMatchObject({ handled: 20, duplicates: 0, requeued: 0 });
    expect(subscribed).toBe(1);
    for (const id of ids) expect(await effects(env, id)).toBe(1);
    await consumer.stop();
  });

  it('ordering: messages of one key are handled one at a time, in delivery order', async () => {
    const seen = new Map<string, number[]>();
    let running = 0;
    let overlapWithinKey = false;
    const active = new Set<string>();
    const consumer = consumerFor(
      env,
      async ({ payload, message }) => {
        const key = message.key ?? '';
        if (active.has(key)) overlapWithinKey = true;
        active.add(key);
        running++;
        await sleep(Math.random() * 4);
        seen.set(key, [...(seen.get(key) ?? []), payload.total]);
        running--;
        active.delete(key);
      },
      { ordering: true, prefetch: 50 },
    );
    await consumer.start();
    for (let i = 0; i < 30; i++) {
      await publish(env, { orderId: `a-${i}`, total: i }, { key: 'a' });
      await publish(env, { orderId: `b-${i}`, total: i }, { key: 'b' });
    }
    await vi.waitFor(() => {
      expect(seen.get('a')).toHaveLength(30);
      expect(seen.get('b')).toHaveLength(30);
      expect(consumer.stats.handled).toBe(60);
    }, WAIT);
    const inOrder = Array.from({ length: 30 }, (_, i) => i);
    expect(seen.get('a')).toEqual(inOrder);
    expect(seen.get('b')).toEqual(inOrder);
    expect(overlapWithinKey).toBe(false);
    expect(running).toBe(0);
    await consumer.stop();
  });

  it('declares a quorum work queue when asked', async () => {
    const consumer = consumerFor(env, async () => undefined, { queueType: 'quorum' });
    await consumer.start();
    const id = await publish(env, { orderId: 'q-1', total: 1 });
    await vi.waitFor(() => expect(consumer.stats.handled, 'the quorum queue delivery').toBe(1), WAIT);
    // Redeclaring the queue as classic fails: it really is a quorum queue.
    const ch = await env.broker.connection.createChannel();
    ch.on('error', () => undefined);
    await expect(ch.assertQueue(consumer.queue, { durable: true, arguments: { 'x-queue-type': 'classic' } })).rejects.toThrow(/PRECONDITION_FAILED/);
    // And a consumer that asks for a classic queue under that name is refused at start.
    const clash = consumerFor(env, async () => undefined, { name: env.broker.name('clash'), queue: consumer.queue });
    await expect(clash.start()).rejects.toThrow(/refused the topology.*PRECONDITION_FAILED/);
    await clash.stop();
    expect((await deadLetters(env)).filter((d) => d.message_id === id)).toHaveLength(0);
    await consumer.stop();
  });
});
