import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTcpProxy, testUrls, type TcpProxy } from '../../../test/helpers.js';
import { WAIT, consumerFor, effects, effectsNoted, publish, setupEnv, type Env } from './support.js';

let env: Env;
let proxy: TcpProxy;
beforeAll(async () => {
  env = await setupEnv();
  proxy = await startTcpProxy(testUrls().amqpUrl, 5672);
});
afterAll(async () => {
  await env.cleanup();
  await proxy.close();
});

describe('connection loss (must show 6)', () => {
  it('the RabbitMQ connection closed twice while consuming: the consumer resubscribes and nothing is lost or handled twice', async () => {
    const consumer = consumerFor(
      env,
      async ({ db, message }) => {
        await sleep(2);
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'reconnect')`, [message.messageId]);
      },
      { amqp: proxy.url(testUrls().amqpUrl), prefetch: 10 },
    );
    let subscribed = 0;
    consumer.on('subscribed', () => (subscribed += 1));
    await consumer.start();
    const ids = await Promise.all(Array.from({ length: 300 }, (_, i) => publish(env, { orderId: `r-${i}`, total: i })));
    await vi.waitFor(async () => expect(await effectsNoted(env, 'reconnect'), 'some messages handled before the cut').toBeGreaterThanOrEqual(60), WAIT);
    proxy.cut();
    await vi.waitFor(() => expect(subscribed, 'a resubscription').toBeGreaterThanOrEqual(2), WAIT);
    await vi.waitFor(async () => expect(await effectsNoted(env, 'reconnect'), 'more messages handled').toBeGreaterThanOrEqual(180), WAIT);
    proxy.cut();
    await vi.waitFor(() => expect(subscribed, 'a second resubscription').toBeGreaterThanOrEqual(3), WAIT);
    await vi.waitFor(async () => {
      expect(await effectsNoted(env, 'reconnect'), 'all 300 effects').toBeGreaterThanOrEqual(300);
      expect(consumer.stats.handled).toBe(300);
    }, WAIT);
    await sleep(500);
    const rows = await env.db.pool.query<{ total: string; distinct: string }>(
      `SELECT count(*)::text AS total, count(DISTINCT message_id)::text AS distinct FROM "${env.db.schema}".effects WHERE message_id = ANY($1::uuid[])`,
      [ids],
    );
    expect(rows.rows[0]).toEqual({ total: '300', distinct: '300' });
    // Deliveries in flight at a cut come back; the ones already committed are duplicates, not effects.
    expect(consumer.stats.handled).toBe(300);
    expect(consumer.stats.deadLettered).toBe(0);
    await consumer.stop();
  });
});

describe('database connections lost', () => {
  it('PostgreSQL backends of the consumer terminated while consuming: every message has exactly one effect', async () => {
    const pool = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 8, application_name: `inbox-victim-${env.db.schema}` });
    pool.on('error', () => undefined);
    try {
      const consumer = consumerFor(
        env,
        async ({ db, message }) => {
          await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'pg-kill')`, [message.messageId]);
          await sleep(1);
        },
        { db: pool, prefetch: 16, retry: { maxAttempts: 10, initialDelayMs: 50, maxDelayMs: 200 } },
      );
      await consumer.start();
      const ids = await Promise.all(Array.from({ length: 400 }, (_, i) => publish(env, { orderId: `pg-${i}`, total: i })));
      for (let round = 0; round < 3; round++) {
        await vi.waitFor(async () => expect(await effectsNoted(env, 'pg-kill'), `progress before kill ${round + 1}`).toBeGreaterThanOrEqual(80 * (round + 1)), WAIT);
        await env.db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`inbox-victim-${env.db.schema}`]);
      }
      await vi.waitFor(async () => {
        expect(await effectsNoted(env, 'pg-kill'), 'all 400').toBeGreaterThanOrEqual(400);
        expect(consumer.stats.handled + consumer.stats.duplicates).toBeGreaterThanOrEqual(400);
      }, WAIT);
      await sleep(500);
      const rows = await env.db.pool.query<{ total: string; distinct: string }>(
        `SELECT count(*)::text AS total, count(DISTINCT message_id)::text AS distinct FROM "${env.db.schema}".effects WHERE message_id = ANY($1::uuid[])`,
        [ids],
      );
      expect(rows.rows[0]).toEqual({ total: '400', distinct: '400' });
      expect(consumer.stats.deadLettered).toBe(0);
      // The kills really hit transactions in flight.
      expect(consumer.stats.requeued + consumer.stats.retries).toBeGreaterThan(0);
      await consumer.stop();
    } finally {
      await pool.end();
    }
  });
});

describe('stop()', () => {
  it('resolves promptly while RabbitMQ is unreachable', async () => {
    const down = await startTcpProxy(testUrls().amqpUrl, 5672);
    try {
      const consumer = consumerFor(env, async () => undefined, { amqp: down.url(testUrls().amqpUrl) });
      await consumer.start();
      down.setDown(true);
      await sleep(300);
      const started = performance.now();
      await consumer.stop();
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      await down.close();
    }
  });

  it('waits for a handler in flight up to the timeout, aborts its signal and resolves; the message is handled by the next consumer', async () => {
    let aborted = false;
    let release: () => void = () => undefined;
    const name = env.broker.name('stop');
    const stuck = consumerFor(
      env,
      async ({ signal }) => {
        await new Promise<void>((resolve, reject) => {
          release = resolve;
          signal.addEventListener('abort', () => {
            aborted = true;
            reject(new Error('aborted'));
          });
        });
      },
      { name, stopTimeoutMs: 300 },
    );
    await stuck.start();
    const id = await publish(env, { orderId: 'slow', total: 1 });
    await sleep(200);
    const started = performance.now();
    await stuck.stop();
    const took = performance.now() - started;
    release();
    expect(aborted).toBe(true);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(3000);
    // The aborted delivery used no attempt: it went back to the queue.
    expect(stuck.stats).toMatchObject({ handled: 0, retries: 0, deadLettered: 0, failures: 0, requeued: 1 });
    const next = consumerFor(
      env,
      async ({ db, message }) => {
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'next')`, [message.messageId]);
      },
      { name },
    );
    await next.start();
    await vi.waitFor(async () => {
      expect(await effects(env, id), 'the next consumer to handle it').toBe(1);
      expect(next.stats.handled).toBe(1);
    }, WAIT);
    await next.stop();
  });
});
