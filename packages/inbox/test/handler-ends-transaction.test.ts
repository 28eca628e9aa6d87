// A handler that ends the consumer's transaction itself: ROLLBACK on tx undoes the inbox row, and
// what the handler writes afterwards is committed on its own, so acking it as handled would leave
// a handled message with no inbox row (its redelivery handled again). The consumer sees the
// connection out of any transaction before its COMMIT and dead-letters the delivery at once,
// saying why. A handler that runs COMMIT kept its inbox row: that message is handled (acked).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DeadLetteredInfo } from '@mailroom/inbox';
import { WAIT, consumerFor, effectsNoted, publish, setupEnv, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

async function inboxRows(consumer: string, messageId: string): Promise<number> {
  const result = await env.db.pool.query(`SELECT 1 FROM "${env.db.schema}".inbox WHERE consumer = $1 AND message_id = $2`, [consumer, messageId]);
  return result.rowCount ?? 0;
}

describe.each([{ maxBatchSize: undefined }, { maxBatchSize: 1 }])('group commit maxBatchSize $maxBatchSize', ({ maxBatchSize }) => {
  const label = String(maxBatchSize ?? 'default');

  it('ROLLBACK on tx: dead-lettered at once as non-retryable, naming the cause; never acked as handled', async () => {
    const s = env.db.schema;
    const note = `rollback-${label}`;
    const dead: DeadLetteredInfo[] = [];
    const consumer = consumerFor(
      env,
      async ({ db, message }) => {
        await db.query(`INSERT INTO "${s}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, `${note} before`]);
        await db.query('ROLLBACK');
        await db.query(`INSERT INTO "${s}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, `${note} after`]);
      },
      { name: env.broker.name(note), retry: { maxAttempts: 3, initialDelayMs: 100 }, ...(maxBatchSize === undefined ? {} : { maxBatchSize }) },
    );
    consumer.on('deadLettered', (d) => dead.push(d));
    await consumer.start();
    const id = await publish(env, { orderId: 'o-1', total: 1 });
    await vi.waitFor(() => expect(dead).toHaveLength(1), WAIT);
    expect(dead[0]).toMatchObject({ messageId: id, reason: 'non-retryable', attempt: 1 });
    expect(dead[0]?.error).toContain('ROLLBACK on tx');
    expect(consumer.stats).toMatchObject({ handled: 0, retries: 0, deadLettered: 1 });
    expect(await inboxRows(consumer.name, id)).toBe(0);
    // What the README says happens to the handler's own writes: undone before, kept after.
    expect(await effectsNoted(env, `${note} before`)).toBe(0);
    expect(await effectsNoted(env, `${note} after`)).toBe(1);
    await consumer.stop();
  }, 60_000);

  it('COMMIT on tx: the inbox row was kept with the handler writes, so the message is handled', async () => {
    const s = env.db.schema;
    const note = `commit-${label}`;
    const consumer = consumerFor(
      env,
      async ({ db, message }) => {
        await db.query(`INSERT INTO "${s}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, note]);
        await db.query('COMMIT');
      },
      { name: env.broker.name(note), ...(maxBatchSize === undefined ? {} : { maxBatchSize }) },
    );
    await consumer.start();
    const id = await publish(env, { orderId: 'o-2', total: 2 });
    await vi.waitFor(() => expect(consumer.stats.handled).toBe(1), WAIT);
    expect(consumer.stats).toMatchObject({ handled: 1, failures: 0, deadLettered: 0 });
    expect(await inboxRows(consumer.name, id)).toBe(1);
    expect(await effectsNoted(env, note)).toBe(1);
    await consumer.stop();
  }, 60_000);
});
