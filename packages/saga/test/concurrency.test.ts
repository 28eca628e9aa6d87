// Must show 2 (issue 11): 500 instances, each receiving 20 messages delivered to three consumer
// processes at once, with duplicates injected: every instance's final state equals a serial
// application of its messages, exactly once each.
//
// The three processes (fixtures/saga-consumer.mjs, running the BUILT packages: `pnpm build`
// first) run the counter saga, whose step appends the message's sequence number to the state.
// Two of them share the consumer "main" (one queue, competing for deliveries); the third is the
// consumer "side" on a queue of its own, so every message reaches the saga twice, through two
// inboxes, at the same time. About one message in ten is published a second time with the same
// message id. A lost update would show as a missing sequence number, a double apply as a repeated one.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { envelopeHeaders } from '@mailroom/core/internal';
import { createConsumer, handler } from '@mailroom/inbox';
import { spawnNode, testUrls, type Child } from '../../../test/helpers.js';
import { counterProblems } from './counter-check.js';
import { setupEnv, type Env } from './support.js';

const fixture = fileURLToPath(new URL('./fixtures/saga-consumer.mjs', import.meta.url));
const INSTANCES = 500;
const MESSAGES = 20;
const DUPLICATE_SHARE = 0.1;

let env: Env;
const children: Child[] = [];

beforeAll(async () => {
  env = await setupEnv();
});

afterAll(async () => {
  for (const child of children) child.kill();
  await Promise.all(children.map((c) => c.exited));
  const ch = await env.broker.connection.createChannel();
  // Consumers that are never started, only to learn the names of the queues the children declared.
  for (const name of ['main', 'side']) {
    const probe = createConsumer({
      name: env.broker.name(name),
      db: env.db.pool,
      amqp: testUrls().amqpUrl,
      handlers: [handler(defineMessage('saga.bump', z.object({})), async () => undefined)],
    });
    for (const q of [probe.queue, ...probe.delayQueues]) await ch.deleteQueue(q).catch(() => undefined);
  }
  await ch.close().catch(() => undefined);
  await env.cleanup();
});

function startChild(name: string): Child {
  const child = spawnNode(fixture, [], {
    FIXTURE_DATABASE_URL: testUrls().databaseUrl,
    FIXTURE_AMQP_URL: testUrls().amqpUrl,
    FIXTURE_SCHEMA: env.db.schema,
    FIXTURE_NAME: env.broker.name(name),
    FIXTURE_EXCHANGE: env.exchange,
    FIXTURE_DEAD: env.broker.name('dead'),
  });
  children.push(child);
  return child;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const result = await env.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, params);
  return result.rows[0]?.n ?? 0;
}

it('500 instances x 20 messages, three consumer processes, duplicates injected: each instance is a serial application of its messages, each exactly once', async () => {
  const processes = [startChild('main'), startChild('main'), startChild('side')];
  await vi.waitFor(
    () => {
      for (const p of processes) {
        if (p.process.exitCode !== null) throw new Error(`a consumer process exited:\n${p.output()}`);
        expect(p.output(), 'the consumer processes to start').toContain('ready');
      }
    },
    { timeout: 30_000, interval: 50 },
  );

  // Each instance's messages are published one after the other, so the three processes take
  // messages of the same instance at the same moment; duplicates go out later, in between.
  const ids = Array.from({ length: INSTANCES }, (_, i) => `i-${i}-${randomUUID().slice(0, 8)}`);
  const messages = ids.flatMap((id) => Array.from({ length: MESSAGES }, (_, k) => ({ id, seq: k + 1, messageId: randomUUID() })));
  const duplicates = messages.filter(() => Math.random() < DUPLICATE_SHARE);
  const sends = [...messages];
  const began = Date.now();
  for (const d of duplicates) sends.splice(Math.floor(Math.random() * (sends.length + 1)), 0, d);
  for (let i = 0; i < sends.length; i++) {
    const m = sends[i] as (typeof sends)[number];
    env.publisher.publish(env.exchange, 'saga.bump', Buffer.from(JSON.stringify({ id: m.id, seq: m.seq })), {
      messageId: m.messageId,
      type: 'saga.bump',
      contentType: 'application/json',
      persistent: true,
      headers: envelopeHeaders({ key: null }),
    });
    if (i % 1000 === 999) await env.publisher.waitForConfirms();
  }
  await env.publisher.waitForConfirms();

  // Done when both consumers have an inbox row for every message (each handled it once) and
  // the history holds a row per message.
  const total = INSTANCES * MESSAGES;
  await vi.waitFor(
    async () => {
      for (const p of processes) if (p.process.exitCode !== null) throw new Error(`a consumer process exited:\n${p.output()}`);
      expect(await count(`"${env.db.schema}".inbox WHERE consumer = $1`, [env.broker.name('main')])).toBe(total);
      expect(await count(`"${env.db.schema}".inbox WHERE consumer = $1`, [env.broker.name('side')])).toBe(total);
      expect(await count(`"${env.db.schema}".saga_history`)).toBe(total);
    },
    { timeout: 120_000, interval: 250 },
  );
  const tookMs = Date.now() - began;

  const problems = await counterProblems(env, messages, MESSAGES);
  expect(problems.slice(0, 20)).toEqual([]);
  expect(await count(`"${env.db.schema}".sagas`)).toBe(INSTANCES);

  // Every process took part, and the injected duplicates were found by the inboxes.
  for (const p of processes) p.kill('SIGTERM');
  await Promise.all(processes.map((p) => p.exited));
  const stats = processes.map((p) => JSON.parse(/^stats (.*)$/m.exec(p.output())?.[1] ?? 'null') as { handled: number; duplicates: number; deadLettered: number; retries: number } | null);
  for (const [i, s] of stats.entries()) {
    expect(s, processes[i]?.output()).not.toBeNull();
    expect(s?.handled, `process ${i}`).toBeGreaterThan(0);
    expect(s?.deadLettered, `process ${i}`).toBe(0);
    // No step failed: a message applied through one inbox while the other waited for the lock
    // is found in the history, not re-applied and refused by the history's key.
    expect(s?.retries, `process ${i}: ${processes[i]?.output().split('\n').filter((l) => l.startsWith('retrying')).slice(0, 3).join('\n')}`).toBe(0);
  }
  const handled = stats.map((s) => s?.handled ?? 0);
  const duplicatesFound = stats.map((s) => s?.duplicates ?? 0);
  expect((handled[0] ?? 0) + (handled[1] ?? 0)).toBe(total);
  expect(handled[2]).toBe(total);
  // Each duplicate reached both queues; an inbox found it, unless it arrived while its first copy
  // was still being handled (then the copy waited for that commit and was found then too).
  expect(duplicatesFound.reduce((a, b) => a + b, 0)).toBe(2 * duplicates.length);
  process.stdout.write(
    `concurrency: ${total} messages + ${duplicates.length} duplicates through two inboxes in ${tookMs} ms (publish to last commit), per process handled ${handled.join('/')}, inbox duplicates ${duplicatesFound.join('/')}\n`,
  );
}, 180_000);
