import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WAIT, consumerFor, deadLetters, effects, publish, setupEnv, withDeadLetterSink, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

describe('retries through delay queues (must show 3)', () => {
  it('a handler that fails three times and then succeeds has one effect, with delays that follow the policy', async () => {
    const attempts: Array<{ attempt: number; at: number }> = [];
    const consumer = consumerFor(
      env,
      async ({ db, message }) => {
        attempts.push({ attempt: message.attempt, at: performance.now() });
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, `attempt ${message.attempt}`]);
        // Thrown after the insert: the rollback must take the effect away with it.
        if (message.attempt <= 3) throw new Error(`flaky downstream, attempt ${message.attempt}`);
      },
      { retry: { maxAttempts: 5, initialDelayMs: 200, multiplier: 2 } },
    );
    await consumer.start();
    const id = await publish(env, { orderId: 'o-flaky', total: 3 });
    await vi.waitFor(async () => {
      expect(await effects(env, id), 'the fourth attempt to succeed').toBe(1);
      expect(consumer.stats.handled).toBe(1);
    }, { ...WAIT, timeout: 15_000 });
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
    const gaps = attempts.slice(1).map((a, i) => a.at - (attempts[i]?.at ?? 0));
    const policy = [200, 400, 800];
    gaps.forEach((gap, i) => {
      expect(gap).toBeGreaterThanOrEqual((policy[i] ?? 0) - 5);
      expect(gap).toBeLessThan((policy[i] ?? 0) + 700);
    });
    expect(await effects(env, id)).toBe(1);
    expect(consumer.stats).toMatchObject({ handled: 1, failures: 3, retries: 3, deadLettered: 0, duplicates: 0 });
    expect(await deadLetters(env)).toHaveLength(0);
    await consumer.stop();
  });

  it('a handler that always fails ends in dead letters after the last attempt while 1,000 other messages are handled', async () => {
    const marks = { firstFailure: -1, deadLettered: -1 };
    const consumer = consumerFor(
      env,
      async ({ db, message, payload }) => {
        if (payload.orderId === 'poison') {
          if (marks.firstFailure < 0) marks.firstFailure = consumer.stats.handled;
          throw new Error('the ledger rejects this order');
        }
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'bulk')`, [message.messageId]);
      },
      { retry: { maxAttempts: 3, initialDelayMs: 300, multiplier: 2 }, prefetch: 50, deadLetters: withDeadLetterSink(env) },
    );
    consumer.on('deadLettered', () => {
      marks.deadLettered = consumer.stats.handled;
    });
    await consumer.start();
    const before = await effects(env);
    const poison = await publish(env, { orderId: 'poison', total: 0 });
    const ids = await Promise.all(Array.from({ length: 1000 }, (_, i) => publish(env, { orderId: `bulk-${i}`, total: i })));
    await vi.waitFor(async () => {
      expect((await effects(env)) - before, '1000 handled').toBe(1000);
      expect(await deadLetters(env), 'the dead letter in the store').toHaveLength(1);
      expect(consumer.stats).toMatchObject({ handled: 1000, deadLettered: 1 });
    }, { ...WAIT, timeout: 40_000, interval: 200 });
    const [dl] = await deadLetters(env);
    expect(dl).toMatchObject({ message_id: poison, reason: 'max-attempts', attempts: 3, type: 'order.placed', source: consumer.queue });
    expect(dl?.error).toContain('the ledger rejects this order');
    expect(dl?.payload).toEqual({ orderId: 'poison', total: 0 });
    expect((await effects(env)) - before).toBe(1000);
    expect(new Set(ids).size).toBe(1000);
    expect(consumer.stats).toMatchObject({ handled: 1000, failures: 3, retries: 2, deadLettered: 1, duplicates: 0 });
    // The queue kept flowing: other messages were handled between the first failure and the dead letter.
    expect(marks.deadLettered).toBeGreaterThan(marks.firstFailure);
    await consumer.stop();
  });
});
