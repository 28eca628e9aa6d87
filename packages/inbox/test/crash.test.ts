// Crash tests with a consumer child process that kills itself with SIGKILL at a crash point.
// The fixture imports the built packages: run `pnpm build` before this file.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnNode, testUrls, waitFor } from '../../../test/helpers.js';
import { consumerFor, effects, publish, recordEffect, setupEnv, type Env } from './support.js';

const fixture = fileURLToPath(new URL('./fixtures/consumer.mjs', import.meta.url));
let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

async function crashOnce(name: string, crashPoint: string): Promise<{ id: string; output: string }> {
  const child = spawnNode(fixture, [], {
    MAILROOM_CRASH_POINTS: crashPoint,
    FIXTURE_DATABASE_URL: testUrls().databaseUrl,
    FIXTURE_AMQP_URL: testUrls().amqpUrl,
    FIXTURE_SCHEMA: env.db.schema,
    FIXTURE_NAME: name,
    FIXTURE_EXCHANGE: env.exchange,
    FIXTURE_DEAD: env.broker.name('dead'),
  });
  try {
    await waitFor(() => child.output().includes('ready'), { what: `the child consumer to start: ${child.output()}`, timeoutMs: 20_000 });
    const id = await publish(env, { orderId: `crash-${crashPoint}`, total: 1 });
    const exit = await Promise.race([child.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no crash: ${child.output()}`)), 20_000))]);
    expect(exit.signal).toBe('SIGKILL');
    expect(child.output()).toContain(`crash point ${crashPoint} reached`);
    return { id, output: child.output() };
  } finally {
    child.kill();
  }
}

describe('consumer killed with SIGKILL (must show 2)', () => {
  it('after its commit but before the ack: the message is redelivered and counted as a duplicate; one effect', async () => {
    const name = env.broker.name('crash-after-commit');
    const { id, output } = await crashOnce(name, 'inbox.after-commit-before-ack');
    expect(output).toContain(`handled ${id}`);
    expect(await effects(env, id)).toBe(1);
    const survivor = consumerFor(env, recordEffect(env.db.schema), { name });
    await survivor.start();
    await waitFor(() => survivor.stats.duplicates === 1, { what: 'the redelivery to be found a duplicate' });
    expect(await effects(env, id)).toBe(1);
    expect(survivor.stats).toMatchObject({ handled: 0, duplicates: 1 });
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
    await waitFor(() => survivor.stats.handled === 1, { what: 'the redelivery to be handled' });
    expect(await effects(env, id)).toBe(1);
    expect(survivor.stats).toMatchObject({ handled: 1, duplicates: 0 });
    await survivor.stop();
  });
});
