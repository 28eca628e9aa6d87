import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage, MetricsRegistry, type Queryable } from '@mailroom/core';
import { createConsumer, handler, NonRetryableError, retryHorizonMs } from '@mailroom/inbox';
import { createRelay, enqueue } from '@mailroom/outbox';
import { testUrls } from '../../../test/helpers.js';
import { OrderPlaced, WAIT, consumerFor, deadLetters, effects, publish, recordEffect, setupEnv, withDeadLetterSink, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

describe('inbox dedupe (must show 1)', () => {
  it('one message delivered five times (four duplicate publishes, one broker redelivery) has one effect and four counted duplicates', async () => {
    const name = env.broker.name('dedupe');
    // A first consumer only declares the queue; the deliveries wait until the second one starts.
    const declarer = consumerFor(env, recordEffect(env.db.schema), { name, prefetch: 1 });
    await declarer.start();
    await declarer.stop();
    const id = await publish(env, { orderId: 'o-1', total: 10 });
    for (let i = 0; i < 4; i++) await publish(env, { orderId: 'o-1', total: 10 }, { messageId: id });
    // Take the first copy and give it back: the broker redelivers it (redelivered = true).
    const raw = await env.broker.connection.createChannel();
    const taken = await raw.get(name, { noAck: false });
    expect(taken).not.toBe(false);
    if (taken !== false) raw.nack(taken, false, true);
    await raw.close();

    const metrics = new MetricsRegistry();
    const consumer = consumerFor(env, recordEffect(env.db.schema), { name, prefetch: 1, metrics });
    const redelivered: boolean[] = [];
    consumer.on('handled', (m) => redelivered.push(m.redelivered));
    consumer.on('duplicate', (m) => redelivered.push(m.redelivered));
    await consumer.start();
    // A duplicate changes nothing in the database: the stats (counted after each ack) are the state.
    await vi.waitFor(async () => {
      expect(await effects(env, id)).toBe(1);
      expect(consumer.stats).toMatchObject({ handled: 1, duplicates: 4 });
    }, WAIT);
    await sleep(300);
    expect(await effects(env, id)).toBe(1);
    expect(consumer.stats).toMatchObject({ handled: 1, duplicates: 4, failures: 0, retries: 0, deadLettered: 0 });
    expect(redelivered).toHaveLength(5);
    expect(redelivered.filter(Boolean)).toHaveLength(1);
    const inbox = await env.db.pool.query(`SELECT count(*)::int AS n FROM "${env.db.schema}".inbox WHERE message_id = $1`, [id]);
    expect(inbox.rows[0]).toEqual({ n: 1 });
    const text = await metrics.render();
    expect(text).toContain(`mailroom_inbox_duplicates_total{consumer="${name}"} 4`);
    expect(text).toContain(`mailroom_inbox_handled_total{consumer="${name}",type="order.placed"} 1`);
    await consumer.stop();
  });

  it('two consumers with different names each handle the message once', async () => {
    const a = consumerFor(env, recordEffect(env.db.schema));
    const b = consumerFor(env, recordEffect(env.db.schema));
    await a.start();
    await b.start();
    const id = await publish(env, { orderId: 'o-2', total: 1 });
    await publish(env, { orderId: 'o-2', total: 1 }, { messageId: id });
    await vi.waitFor(async () => {
      expect(await effects(env, id)).toBe(2);
      expect([a.stats.handled, a.stats.duplicates, b.stats.handled, b.stats.duplicates]).toEqual([1, 1, 1, 1]);
    }, WAIT);
    await a.stop();
    await b.stop();
  });
});

describe('follow-up events (must show 7)', () => {
  it('a follow-up enqueued in the handler is published if and only if the handler commits', async () => {
    const FollowUp = defineMessage('order.billed', z.object({ orderId: z.string() }), { exchange: env.exchange });
    const followUps = await env.broker.queueFor(env.exchange, 'order.billed');
    const collected = env.broker.collect(followUps);
    const relay = createRelay({ database: env.db.pool, amqp: testUrls().amqpUrl, schema: env.db.schema, pollIntervalMs: 100 });
    await relay.start();
    try {
      const consumer = consumerFor(
        env,
        async ({ payload, tx, db, message }) => {
          await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'billed')`, [message.messageId]);
          await enqueue(tx, FollowUp.create({ orderId: payload.orderId }), { schema: env.db.schema });
          if (payload.orderId.startsWith('reject')) throw new NonRetryableError(`order ${payload.orderId} is rejected`);
        },
        { retry: { maxAttempts: 1 }, deadLetters: withDeadLetterSink(env) },
      );
      await consumer.start();
      const rejected = await publish(env, { orderId: 'reject-1', total: 5 });
      const accepted = await publish(env, { orderId: 'accept-1', total: 5 });
      await collected.waitForCount(1);
      await vi.waitFor(async () => expect((await deadLetters(env)).map((d) => d.message_id), 'the rejected order in dead letters').toContain(rejected), WAIT);
      await vi.waitFor(async () => expect((await relay.backlog()).rows, 'an empty outbox').toBe(0), WAIT);
      await sleep(500);
      expect(collected.messages.map((m) => JSON.parse(m.content.toString()) as unknown)).toEqual([{ orderId: 'accept-1' }]);
      expect(await effects(env, accepted)).toBe(1);
      expect(await effects(env, rejected)).toBe(0);
      expect(consumer.stats).toMatchObject({ handled: 1, deadLettered: 1 });
      await consumer.stop();
    } finally {
      await collected.stop();
      await relay.stop();
    }
  });
});

describe('configuration', () => {
  it('refuses unknown options and a retention window shorter than the retry horizon', () => {
    const base = {
      name: 'x',
      db: env.db.pool as Queryable,
      amqp: testUrls().amqpUrl,
      handlers: [handler(OrderPlaced(env.exchange), async () => undefined)],
    };
    expect(() => createConsumer({ ...base, prefetchCount: 3 } as unknown as Parameters<typeof createConsumer>[0])).toThrow(/unknown option "prefetchCount"/);
    const retry = { maxAttempts: 4, initialDelayMs: 1000, multiplier: 2 };
    expect(retryHorizonMs(retry)).toBe(7000);
    expect(() => createConsumer({ ...base, retry, retention: { windowMs: 6999 } })).toThrow(/shorter than the retry horizon \(7000 ms/);
    expect(() => createConsumer({ ...base, retry, retention: { windowMs: 7000 } })).not.toThrow();
  });

  it('cleanup deletes only rows past the window', async () => {
    const consumer = consumerFor(env, recordEffect(env.db.schema), { retry: { maxAttempts: 1 }, retention: { windowMs: 60_000, cleanupIntervalMs: 0 } });
    await env.db.pool.query(
      `INSERT INTO "${env.db.schema}".inbox (consumer, message_id, received_at) VALUES
         ($1, gen_random_uuid(), now() - interval '2 minutes'), ($1, gen_random_uuid(), now() - interval '2 minutes'),
         ($1, gen_random_uuid(), now()), ('other', gen_random_uuid(), now() - interval '2 minutes')`,
      [consumer.name],
    );
    expect(await consumer.cleanup()).toBe(2);
    const left = await env.db.pool.query(`SELECT consumer FROM "${env.db.schema}".inbox WHERE consumer IN ($1, 'other') ORDER BY 1`, [consumer.name]);
    expect(left.rows.map((r: { consumer: string }) => r.consumer).sort()).toEqual([consumer.name, 'other'].sort());
  });
});
