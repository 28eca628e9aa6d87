// A lone delivery's contract validation starts while its inbox insert is in flight (so the two
// overlap), but its verdict counts only once the insert said "not a duplicate": a duplicate is a
// duplicate whatever its body holds, and a new message whose body fails the contract is
// dead-lettered with its inbox row rolled back, its handler never called. Both with a transaction
// of its own (maxBatchSize 1) and with group commit (a batch of one runs the same statements).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WAIT, consumerFor, deadLetters, effects, publish, queueDepth, recordEffect, setupEnv, withDeadLetterSink, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

async function inboxRows(consumer: string, id: string): Promise<number> {
  const result = await env.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.db.schema}".inbox WHERE consumer = $1 AND message_id = $2`, [consumer, id]);
  return result.rows[0]?.n ?? 0;
}

describe('a lone delivery validates its body while the inbox insert is in flight', () => {
  for (const maxBatchSize of [1, 32]) {
    it(`a duplicate whose body fails the contract is a duplicate, acked, not an invalid payload (maxBatchSize ${maxBatchSize})`, async () => {
      const calls: string[] = [];
      const record = recordEffect(env.db.schema);
      const consumer = consumerFor(
        env,
        async (ctx) => {
          calls.push(ctx.message.messageId);
          await record(ctx);
        },
        { maxBatchSize, retention: { cleanupIntervalMs: 0 } },
      );
      await consumer.start();
      const id = await publish(env, { orderId: `overlap-${maxBatchSize}`, total: 1 });
      await vi.waitFor(() => expect(consumer.stats.handled).toBe(1), WAIT);
      // Alone (the first one is settled): same id, a body the contract refuses (orderId a number).
      await publish(env, { orderId: 42 }, { messageId: id });
      await vi.waitFor(() => expect(consumer.stats.duplicates).toBe(1), WAIT);
      expect(consumer.stats).toMatchObject({ handled: 1, duplicates: 1, conflictingDuplicates: 1, failures: 0, deadLettered: 0 });
      expect(await queueDepth(env, consumer.queue), 'acked').toBe(0);
      expect(await queueDepth(env, env.broker.name('dead')), 'nothing dead-lettered').toBe(0);
      expect(calls).toEqual([id]);
      expect(await effects(env, id)).toBe(1);
      await consumer.stop();
    });

    it(`a new message whose body fails the contract is dead-lettered, its inbox row rolled back, its handler not called (maxBatchSize ${maxBatchSize})`, async () => {
      const calls: string[] = [];
      const consumer = consumerFor(
        env,
        async (ctx) => {
          calls.push(ctx.message.messageId);
        },
        { maxBatchSize, retention: { cleanupIntervalMs: 0 }, deadLetters: withDeadLetterSink(env) },
      );
      await consumer.start();
      const id = await publish(env, { orderId: 7, total: 'no' });
      await vi.waitFor(async () => expect((await deadLetters(env)).filter((r) => r.message_id === id)).toHaveLength(1), WAIT);
      const [row] = (await deadLetters(env)).filter((r) => r.message_id === id);
      expect(row).toMatchObject({ reason: 'invalid-payload', type: 'order.placed' });
      expect(row?.error).toMatch(/orderId/);
      expect(calls).toEqual([]);
      expect(await inboxRows(consumer.name, id), 'the inbox row went with the rolled-back transaction').toBe(0);
      expect(consumer.stats).toMatchObject({ handled: 0, duplicates: 0, deadLettered: 1 });
      await consumer.stop();
    });
  }
});
