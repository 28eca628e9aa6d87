// Saga consumers killed with SIGKILL mid-flight (crash points, see core's crash-point.ts): one after
// a step committed and before its ack (the message comes back: the inbox finds it), one after a
// handler ran and before its state was stored (nothing of that step stays). A survivor finishes
// the work: every instance is still a serial application of its messages, each exactly once.
// The processes run the BUILT packages (fixtures/saga-consumer.mjs): `pnpm build` first.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { envelopeHeaders } from '@mailroom/core/internal';
import { createConsumer, handler } from '@mailroom/inbox';
import { spawnNode, testUrls, type Child } from '../../../test/helpers.js';
import { counterProblems, type Bump } from './counter-check.js';
import { setupEnv, type Env } from './support.js';

const fixture = fileURLToPath(new URL('./fixtures/saga-consumer.mjs', import.meta.url));
const INSTANCES = 50;
const MESSAGES = 10;
let env: Env;
const children: Child[] = [];

beforeAll(async () => {
  env = await setupEnv();
});

afterAll(async () => {
  for (const child of children) child.kill();
  await Promise.all(children.map((c) => c.exited));
  const ch = await env.broker.connection.createChannel();
  const probe = createConsumer({
    name: env.broker.name('main'),
    db: env.db.pool,
    amqp: testUrls().amqpUrl,
    handlers: [handler(defineMessage('saga.bump', z.object({})), async () => undefined)],
  });
  for (const q of [probe.queue, ...probe.delayQueues]) await ch.deleteQueue(q).catch(() => undefined);
  await ch.close().catch(() => undefined);
  await env.cleanup();
});

function startChild(crashPoints: string): Child {
  const child = spawnNode(fixture, [], {
    MAILROOM_CRASH_POINTS: crashPoints,
    FIXTURE_DATABASE_URL: testUrls().databaseUrl,
    FIXTURE_AMQP_URL: testUrls().amqpUrl,
    FIXTURE_SCHEMA: env.db.schema,
    FIXTURE_NAME: env.broker.name('main'),
    FIXTURE_EXCHANGE: env.exchange,
    FIXTURE_DEAD: env.broker.name('dead'),
    FIXTURE_PREFETCH: '10',
  });
  children.push(child);
  return child;
}

async function ready(child: Child): Promise<void> {
  await vi.waitFor(() => expect(child.output(), 'the consumer process to start').toContain('ready'), { timeout: 30_000, interval: 50 });
}

it('killed after a commit before its ack, and after a handler before its save: each message is applied exactly once', async () => {
  const afterCommit = startChild('inbox.after-commit-before-ack#60');
  const beforeSave = startChild('saga.before-save#90');
  await Promise.all([ready(afterCommit), ready(beforeSave)]);
  const ids = Array.from({ length: INSTANCES }, (_, i) => `c-${i}-${randomUUID().slice(0, 8)}`);
  const messages: Bump[] = ids.flatMap((id) => Array.from({ length: MESSAGES }, (_, k) => ({ id, seq: k + 1, messageId: randomUUID() })));
  for (const m of messages) {
    env.publisher.publish(env.exchange, 'saga.bump', Buffer.from(JSON.stringify({ id: m.id, seq: m.seq })), {
      messageId: m.messageId,
      type: 'saga.bump',
      contentType: 'application/json',
      persistent: true,
      headers: envelopeHeaders({ key: null }),
    });
  }
  await env.publisher.waitForConfirms();

  for (const [child, point] of [
    [afterCommit, 'inbox.after-commit-before-ack'],
    [beforeSave, 'saga.before-save'],
  ] as const) {
    const exit = await Promise.race([child.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no crash: ${child.output()}`)), 30_000))]);
    expect(exit.signal).toBe('SIGKILL');
    expect(child.output()).toContain(`crash point ${point} reached`);
  }
  const survivor = startChild('');
  await ready(survivor);
  await vi.waitFor(
    async () => {
      const n = await env.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.db.schema}".saga_history`);
      expect(n.rows[0]?.n).toBe(INSTANCES * MESSAGES);
      const inbox = await env.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${env.db.schema}".inbox`);
      expect(inbox.rows[0]?.n).toBe(INSTANCES * MESSAGES);
    },
    { timeout: 60_000, interval: 200 },
  );
  expect((await counterProblems(env, messages, MESSAGES)).slice(0, 20)).toEqual([]);
  survivor.kill('SIGTERM');
  await survivor.exited;
  const stats = JSON.parse(/^stats (.*)$/m.exec(survivor.output())?.[1] ?? 'null') as { handled: number; deadLettered: number } | null;
  expect(stats?.handled).toBeGreaterThan(0);
  expect(stats?.deadLettered).toBe(0);
}, 120_000);
