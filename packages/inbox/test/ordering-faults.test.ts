// Ordering under database faults (found by the chaos harness, seed 78 with --ordering): a
// delivery whose inbox transaction fails because the database went away must not let later
// messages of its key overtake it.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WAIT, consumerFor, publish, setupEnv, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

async function handledOrder(): Promise<string[]> {
  const { rows } = await env.db.pool.query<{ note: string }>(`SELECT note FROM "${env.db.schema}".effects ORDER BY at`);
  return rows.map((r) => r.note);
}

describe('ordering under database faults', () => {
  it('the backend of a delivery is terminated before its COMMIT: later messages of the key wait for it', async () => {
    let terminated = false;
    const consumer = consumerFor(
      env,
      async ({ db, payload }) => {
        if (payload.total === 1 && !terminated) {
          terminated = true;
          // Kill our own session: the COMMIT fails, the database error path runs.
          const { rows } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          await env.db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]?.pid]);
          return;
        }
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES (gen_random_uuid(), $1)`, [String(payload.total)]);
      },
      { ordering: true, prefetch: 20 },
    );
    await consumer.start();
    for (let i = 1; i <= 5; i++) await publish(env, { orderId: `o-${i}`, total: i }, { key: 'k' });
    await vi.waitFor(async () => expect((await handledOrder()).length).toBeGreaterThanOrEqual(5), { ...WAIT, timeout: 20_000 });
    expect(terminated).toBe(true);
    expect(await handledOrder()).toEqual(['1', '2', '3', '4', '5']);
    expect(consumer.stats.requeued).toBeGreaterThanOrEqual(1);
    await consumer.stop();
  });

  it('the backend dies while the handler runs (the handler throws a connection error): no retry through a delay queue, the key keeps its order', async () => {
    await env.db.pool.query(`DELETE FROM "${env.db.schema}".effects`);
    let terminated = false;
    const consumer = consumerFor(
      env,
      async ({ db, payload }) => {
        if (payload.total === 1 && !terminated) {
          terminated = true;
          const { rows } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          await env.db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]?.pid]);
        }
        // Throws for the terminated session: the database failed, not the message.
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES (gen_random_uuid(), $1)`, [String(payload.total)]);
      },
      { ordering: true, prefetch: 20 },
    );
    await consumer.start();
    for (let i = 1; i <= 5; i++) await publish(env, { orderId: `p-${i}`, total: i }, { key: 'k2' });
    await vi.waitFor(async () => expect((await handledOrder()).length).toBeGreaterThanOrEqual(5), { ...WAIT, timeout: 20_000 });
    expect(terminated).toBe(true);
    expect(await handledOrder()).toEqual(['1', '2', '3', '4', '5']);
    expect(consumer.stats).toMatchObject({ retries: 0, failures: 0 });
    expect(consumer.stats.requeued).toBeGreaterThanOrEqual(1);
    await consumer.stop();
  });
});
