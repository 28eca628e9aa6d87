// Issue 9, defect 4 (consumer side): anything published through the default exchange with the
// work queue as routing key was taken for a copy back from a delay queue, so a sender could skip
// every retry (`attempts: 99`) or choose where a dead letter's replay publishes. Retry and
// dead-letter copies are now sealed with the key migration 5 wrote; a delivery that took the
// delay-queue route without a valid seal is a fresh attempt 1 with its real route, and counted.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEAD_LETTER_REASON, MailroomError, MetricsRegistry } from '@mailroom/core';
import { decodeDeadLetter, loadEnvelopeSeal, toExecutor } from '@mailroom/core/internal';
import { NonRetryableError } from '@mailroom/inbox';
import { createTestDatabase } from '../../../test/helpers.js';
import { WAIT, consumerFor, publish, queueDepth, recordEffect, setupEnv, takeDeadLetterCopies, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

// What a sender who can publish to the broker, but cannot read mailroom's secrets, writes (the
// header names spelled out on purpose: this is the hostile input).
const FORGED_ATTEMPTS = { 'x-mailroom-attempts': 99 };
const FORGED_ORIGIN = {
  'x-mailroom-attempts': '1',
  'x-mailroom-original-exchange': 'attacker.exchange',
  'x-mailroom-original-routing-key': 'attacker.key',
  'x-mailroom-seal': 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
};

describe('forged retry state (issue 9, defect 4)', () => {
  it('`attempts: 99` published through the default exchange to the queue still gets every retry; the forgery is counted', async () => {
    const seen: number[] = [];
    const metrics = new MetricsRegistry();
    const consumer = consumerFor(
      env,
      async ({ message }) => {
        seen.push(message.attempt);
        throw new Error('downstream is down');
      },
      { retry: { maxAttempts: 3, initialDelayMs: 100 }, metrics },
    );
    await consumer.start();
    const id = await publish(env, { orderId: 'forged-attempts', total: 1 }, { exchange: '', routingKey: consumer.queue, headers: FORGED_ATTEMPTS });
    await vi.waitFor(async () => expect(await queueDepth(env, env.broker.name('dead')), 'the dead letter after the last attempt').toBe(1), WAIT);
    expect(seen, 'every attempt, counted by mailroom').toEqual([1, 2, 3]);
    const [copy] = await takeDeadLetterCopies(env);
    const letter = decodeDeadLetter(copy!, await loadEnvelopeSeal(toExecutor(env.db.pool), env.db.schema));
    expect(letter).toMatchObject({ messageId: id, reason: DEAD_LETTER_REASON.maxAttempts, attempts: 3, sealed: true });
    expect(consumer.stats).toMatchObject({ retries: 2, deadLettered: 1, forged: 1 });
    expect(await metrics.render()).toContain(`mailroom_inbox_forged_total{consumer="${consumer.name}"} 1`);
    await consumer.stop();
  });

  it("a forged origin never reaches a dead letter's exchange or routing key", async () => {
    const consumer = consumerFor(
      env,
      async ({ payload }) => {
        if (payload.orderId === 'forged-origin') throw new NonRetryableError('rejected');
      },
      { retry: { maxAttempts: 2, initialDelayMs: 100 } },
    );
    await consumer.start();
    await takeDeadLetterCopies(env); // what an earlier test may have left
    const direct = await publish(env, { orderId: 'forged-origin', total: 1 }, { exchange: '', routingKey: consumer.queue, headers: FORGED_ORIGIN });
    // Through the work queue's own binding, with the same forged headers: a plain first delivery.
    const bound = await publish(env, { orderId: 'forged-origin', total: 1 }, { headers: FORGED_ORIGIN });
    await vi.waitFor(async () => expect(await queueDepth(env, env.broker.name('dead')), 'two dead letters').toBe(2), WAIT);
    const seal = await loadEnvelopeSeal(toExecutor(env.db.pool), env.db.schema);
    const letters = new Map((await takeDeadLetterCopies(env)).map((m) => [String(m.properties.messageId), decodeDeadLetter(m, seal)]));
    expect(letters.get(direct)).toMatchObject({ reason: DEAD_LETTER_REASON.nonRetryable, exchange: '', routingKey: consumer.queue, attempts: 1, sealed: true });
    expect(letters.get(bound)).toMatchObject({ reason: DEAD_LETTER_REASON.nonRetryable, exchange: env.exchange, routingKey: 'order.placed', attempts: 1, sealed: true });
    for (const letter of letters.values()) {
      expect(JSON.stringify(letter)).not.toContain('attacker');
    }
    expect(consumer.stats.forged).toBe(1);
    await consumer.stop();
  });

  it('a plain message sent straight to the queue (a history replay) claims no retry state: handled, not counted as forged', async () => {
    const handled: number[] = [];
    const consumer = consumerFor(env, async ({ message }) => {
      handled.push(message.attempt);
    });
    await consumer.start();
    await publish(env, { orderId: 'direct-plain', total: 1 }, { exchange: '', routingKey: consumer.queue });
    await vi.waitFor(() => expect(consumer.stats.handled).toBe(1), WAIT);
    expect(handled).toEqual([1]);
    expect(consumer.stats.forged).toBe(0);
    await consumer.stop();
  });

  it('start() says to migrate when the seal key or its table is missing', async () => {
    const db = await createTestDatabase();
    try {
      await db.pool.query(`DELETE FROM "${db.schema}".secrets`);
      const noKey = consumerFor(env, recordEffect(db.schema), { db: db.pool, schema: db.schema });
      await expect(noKey.start()).rejects.toThrow(/mailroom migrate/);
      await db.pool.query(`DROP TABLE "${db.schema}".secrets`);
      const noTable = consumerFor(env, recordEffect(db.schema), { db: db.pool, schema: db.schema });
      const error: unknown = await noTable.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(MailroomError);
      expect(String((error as Error).message)).toMatch(/secrets.*mailroom migrate/);
    } finally {
      await db.close();
    }
  });
});
