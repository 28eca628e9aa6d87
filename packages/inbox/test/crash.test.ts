// Crash tests with a consumer child process that kills itself with SIGKILL at a crash point.
// The fixture imports the built packages (inbox, and dlq for its sink): run `pnpm build` before this file.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawnNode, testUrls } from '../../../test/helpers.js';
import { WAIT, consumerFor, deadLetters, effects, publish, recordEffect, setupEnv, withDeadLetterSink, type Env } from './support.js';

const fixture = fileURLToPath(new URL('./fixtures/consumer.mjs', import.meta.url));
let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

async function crashOnce(name: string, crashPoint: string): Promise<{ id: string; output: string }> {
  const child = spawnConsumer(name, crashPoint);
  try {
    await waitForReady(child);
    const id = await publish(env, { orderId: `crash-${crashPoint}`, total: 1 });
    const exit = await Promise.race([child.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no crash: ${child.output()}`)), 20_000))]);
    expect(exit.signal).toBe('SIGKILL');
    expect(child.output()).toContain(`crash point ${crashPoint} reached`);
    return { id, output: child.output() };
  } finally {
    child.kill();
  }
}

async function waitForReady(child: ReturnType<typeof spawnConsumer>): Promise<void> {
  await vi.waitFor(() => expect(child.output(), 'the child consumer to start').toContain('ready'), { ...WAIT, timeout: 20_000 });
}

function spawnConsumer(name: string, crashPoint: string, extra: Record<string, string> = {}) {
  return spawnNode(fixture, [], {
    ...extra,
    MAILROOM_CRASH_POINTS: crashPoint,
    FIXTURE_DATABASE_URL: testUrls().databaseUrl,
    FIXTURE_AMQP_URL: testUrls().amqpUrl,
    FIXTURE_SCHEMA: env.db.schema,
    FIXTURE_NAME: name,
    FIXTURE_EXCHANGE: env.exchange,
    FIXTURE_DEAD: env.broker.name('dead'),
  });
}

describe('consumer killed with SIGKILL (must show 2)', () => {
  it('killed after the commit of its 50th message with 300 in the queue: after a restart every message has exactly one effect', async () => {
    const name = env.broker.name('crash-busy');
    const declarer = consumerFor(env, recordEffect(env.db.schema), { name });
    await declarer.start();
    await declarer.stop();
    const ids = await Promise.all(Array.from({ length: 300 }, (_, i) => publish(env, { orderId: `busy-${i}`, total: i })));
    const child = spawnConsumer(name, 'inbox.after-commit-before-ack#50');
    try {
      const exit = await Promise.race([child.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no crash: ${child.output()}`)), 20_000))]);
      expect(exit.signal).toBe('SIGKILL');
    } finally {
      child.kill();
    }
    const before = await effects(env);
    expect(before).toBeGreaterThanOrEqual(50);
    const survivor = consumerFor(env, recordEffect(env.db.schema), { name });
    await survivor.start();
    await vi.waitFor(async () => expect(await effects(env)).toBeGreaterThanOrEqual(300), WAIT);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const rows = await env.db.pool.query<{ total: string; distinct: string }>(
      `SELECT count(*)::text AS total, count(DISTINCT message_id)::text AS distinct FROM "${env.db.schema}".effects WHERE message_id = ANY($1::uuid[])`,
      [ids],
    );
    expect(rows.rows[0]).toEqual({ total: '300', distinct: '300' });
    // At least the message committed at the crash point came back, and was found a duplicate.
    expect(survivor.stats.duplicates).toBeGreaterThanOrEqual(1);
    await survivor.stop();
  });

  it('killed mid-batch (group commit), after several handlers and before the COMMIT: nothing of the batch was kept, every message is redelivered and applied exactly once', async () => {
    const name = env.broker.name('crash-batch');
    const declarer = consumerFor(env, recordEffect(env.db.schema), { name });
    await declarer.start();
    await declarer.stop();
    const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => publish(env, { orderId: `batch-${i}`, total: i })));
    // One pg connection: the deliveries gather while it is busy, so the third handler runs in a batch after at least one other.
    const child = spawnConsumer(name, 'inbox.before-commit#3', { FIXTURE_POOL_MAX: '1' });
    let output: string;
    try {
      const exit = await Promise.race([child.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no crash: ${child.output()}`)), 20_000))]);
      expect(exit.signal).toBe('SIGKILL');
      output = child.output();
    } finally {
      child.kill();
    }
    const handled = ids.filter((id) => output.includes(`handled ${id}`));
    expect(handled).toHaveLength(3);
    const committed = await env.db.pool.query<{ id: string }>(`SELECT message_id::text AS id FROM "${env.db.schema}".effects WHERE message_id = ANY($1::uuid[])`, [ids]);
    const kept = new Set(committed.rows.map((r) => r.id));
    // Handled, in the batch that was being committed, and not kept: at least two of them.
    expect(handled.filter((id) => !kept.has(id)).length).toBeGreaterThanOrEqual(2);
    const survivor = consumerFor(env, recordEffect(env.db.schema), { name });
    await survivor.start();
    await vi.waitFor(async () => {
      expect(await effects(env)).toBeGreaterThanOrEqual(10);
      expect(survivor.stats.handled).toBeGreaterThanOrEqual(10 - kept.size);
    }, WAIT);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const rows = await env.db.pool.query<{ total: string; distinct: string }>(
      `SELECT count(*)::text AS total, count(DISTINCT message_id)::text AS distinct FROM "${env.db.schema}".effects WHERE message_id = ANY($1::uuid[])`,
      [ids],
    );
    expect(rows.rows[0]).toEqual({ total: '10', distinct: '10' });
    // Every message came back: the uncommitted ones were handled again, the committed one (if any) was a duplicate.
    expect(survivor.stats.handled).toBe(10 - kept.size);
    await survivor.stop();
  });

  it('after its commit but before the ack: the message is redelivered and counted as a duplicate; one effect', async () => {
    const name = env.broker.name('crash-after-commit');
    const { id, output } = await crashOnce(name, 'inbox.after-commit-before-ack');
    expect(output).toContain(`handled ${id}`);
    expect(await effects(env, id)).toBe(1);
    const survivor = consumerFor(env, recordEffect(env.db.schema), { name });
    await survivor.start();
    // Nothing in the database changes for a duplicate: the consumer's stats (counted after the ack) are the state.
    await vi.waitFor(() => expect(survivor.stats).toMatchObject({ handled: 0, duplicates: 1 }), WAIT);
    expect(await effects(env, id)).toBe(1);
    await survivor.stop();
  });

  it('inside the handler before the commit: nothing was kept, and the redelivery has the one effect', async () => {
    const name = env.broker.name('crash-before-commit');
    const { id, output } = await crashOnce(name, 'inbox.before-commit');
    // The handler ran (its insert happened inside the transaction) but died before COMMIT.
    expect(output).toContain(`handled ${id}`);
    expect(await effects(env, id)).toBe(0);
    const survivor = consumerFor(env, recordEffect(env.db.schema), { name });
    await survivor.start();
    await vi.waitFor(async () => {
      expect(await effects(env, id)).toBe(1);
      expect(survivor.stats).toMatchObject({ handled: 1, duplicates: 0 });
    }, WAIT);
    await survivor.stop();
  });

  it('after publishing a dead letter but before acking the original, and in the sink after storing it: the dead letter is stored once', async () => {
    for (const point of ['inbox.after-dead-letter-before-ack', 'dlq.sink.after-commit-before-ack']) {
      const name = env.broker.name(`crash-dl-${point.split('.')[0] ?? 'x'}`);
      const child = spawnConsumer(name, point);
      let id: string;
      try {
        await waitForReady(child);
        id = await publish(env, { orderId: 42 }); // an invalid payload: dead-lettered at once
        const exit = await Promise.race([child.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no crash: ${child.output()}`)), 20_000))]);
        expect(exit.signal).toBe('SIGKILL');
      } finally {
        child.kill();
      }
      const survivor = consumerFor(env, recordEffect(env.db.schema), { name, deadLetters: withDeadLetterSink(env) });
      await survivor.start();
      await vi.waitFor(async () => expect((await deadLetters(env)).map((d) => d.message_id), `the dead letter after ${point}`).toContain(id), WAIT);
      await vi.waitFor(async () => {
        const ch = await env.broker.connection.createChannel();
        const dead = await ch.checkQueue(env.broker.name('dead'));
        const work = await ch.checkQueue(name);
        await ch.close();
        expect([dead.messageCount, work.messageCount], 'empty queues').toEqual([0, 0]);
      }, WAIT);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const rows = (await deadLetters(env)).filter((d) => d.message_id === id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ reason: 'invalid-payload', source: name });
      expect(await effects(env, id)).toBe(0);
      await survivor.stop();
    }
  });
});
