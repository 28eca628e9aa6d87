// A handler transaction that PostgreSQL undoes for a deadlock (40P01) or a serialization failure
// (40001) runs again at once, in place, without spending an attempt: the conflict came from what
// other transactions held at that moment, not from the message. After LOCK_CONFLICT_RERUNS
// re-runs in a row the retry policy takes over, so a handler that conflicts every time still ends
// in the dead letters instead of looping.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LOCK_CONFLICT_RERUNS } from '@mailroom/inbox';
import { testUrls } from '../../../test/helpers.js';
import { WAIT, consumerFor, effects, publish, setupEnv, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
  await env.db.pool.query(`CREATE TABLE "${env.db.schema}".locks (id text PRIMARY KEY); INSERT INTO "${env.db.schema}".locks VALUES ('a'), ('b')`);
});
afterAll(async () => {
  await env.cleanup();
});

describe.each([{ maxBatchSize: undefined }, { maxBatchSize: 1 }])('group commit maxBatchSize $maxBatchSize', ({ maxBatchSize }) => {
  it('a handler chosen as a deadlock victim runs again at once: handled once, no attempt spent, no retry', async () => {
    const s = env.db.schema;
    // Another session holds row b and will ask for row a while the handler holds a and asks for b.
    const other = new pg.Client({ connectionString: testUrls().databaseUrl });
    await other.connect();
    const otherPid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    await other.query(`BEGIN; SET LOCAL deadlock_timeout = '10s'; SELECT id FROM "${s}".locks WHERE id = 'b' FOR UPDATE`);
    let releaseHandler: () => void = () => undefined;
    const handlerMayGoOn = new Promise<void>((resolve) => (releaseHandler = resolve));
    let holdsA: () => void = () => undefined;
    const handlerHoldsA = new Promise<void>((resolve) => (holdsA = resolve));
    const attempts: number[] = [];
    const errors: string[] = [];
    const consumer = consumerFor(
      env,
      async ({ db, message }) => {
        attempts.push(message.attempt);
        try {
          // This session finds the deadlock (its timeout is the shorter one), so it is the victim.
          await db.query(`SET LOCAL deadlock_timeout = '100ms'`);
          await db.query(`SELECT id FROM "${s}".locks WHERE id = 'a' FOR UPDATE`);
          if (attempts.length === 1) {
            holdsA();
            await handlerMayGoOn;
          }
          await db.query(`SELECT id FROM "${s}".locks WHERE id = 'b' FOR UPDATE`);
          await db.query(`INSERT INTO "${s}".effects (message_id, note) VALUES ($1, 'deadlock')`, [message.messageId]);
        } catch (error) {
          errors.push(`run ${attempts.length}: ${String((error as { code?: unknown }).code)} ${String(error)}`);
          throw error;
        }
      },
      { name: env.broker.name(`deadlock-${maxBatchSize ?? 'default'}`), retry: { maxAttempts: 3, initialDelayMs: 100 }, ...(maxBatchSize === undefined ? {} : { maxBatchSize }) },
    );
    await consumer.start();
    try {
      const id = await publish(env, { orderId: 'o-1', total: 1 });
      await handlerHoldsA;
      // The other session now waits for a (held by the handler)...
      const otherWantsA = other.query(`SELECT id FROM "${s}".locks WHERE id = 'a' FOR UPDATE`);
      await vi.waitFor(async () => {
        const waiting = await env.db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [otherPid]);
        expect(waiting.rowCount).toBe(1);
      }, WAIT);
      // ...and the handler asks for b: a deadlock, the handler's transaction is undone, the other gets a.
      releaseHandler();
      await otherWantsA;
      await other.query('COMMIT');
      await vi.waitFor(async () => expect(await effects(env, id)).toBe(1), WAIT);
      await vi.waitFor(() => expect(consumer.stats.handled).toBe(1), WAIT);
      // Every run was attempt 1: the deadlock spent no attempt. (On a loaded machine the re-run can
      // itself meet a conflict and run once more; each run but the last was a lock conflict.)
      expect(attempts.length, errors.join('\n')).toBeGreaterThanOrEqual(2);
      expect(attempts.every((a) => a === 1), `${attempts.join(',')}\n${errors.join('\n')}`).toBe(true);
      expect(errors[0], errors.join('\n')).toMatch(/^run 1: 40P01 /);
      expect(consumer.stats).toMatchObject({ handled: 1, lockConflicts: attempts.length - 1, failures: 0, retries: 0, deadLettered: 0, requeued: 0 });
    } finally {
      await other.end().catch(() => undefined);
      await consumer.stop();
    }
  }, 60_000);
});

it(`a handler that meets a serialization failure every time is run ${LOCK_CONFLICT_RERUNS} more times at once, then follows the retry policy to the dead letters`, async () => {
  const runs: number[] = [];
  const consumer = consumerFor(
    env,
    async ({ message }) => {
      runs.push(message.attempt);
      throw Object.assign(new Error('could not serialize access due to concurrent update'), { code: '40001' });
    },
    { name: env.broker.name('serialization'), retry: { maxAttempts: 2, initialDelayMs: 100 } },
  );
  await consumer.start();
  const id = await publish(env, { orderId: 'o-2', total: 2 });
  await vi.waitFor(() => expect(consumer.stats.deadLettered).toBe(1), WAIT);
  const perAttempt = 1 + LOCK_CONFLICT_RERUNS;
  expect(runs).toEqual([...Array.from({ length: perAttempt }, () => 1), ...Array.from({ length: perAttempt }, () => 2)]);
  expect(consumer.stats).toMatchObject({ handled: 0, lockConflicts: 2 * LOCK_CONFLICT_RERUNS, failures: 2, retries: 1, deadLettered: 1 });
  expect(await effects(env, id)).toBe(0);
}, 60_000);
