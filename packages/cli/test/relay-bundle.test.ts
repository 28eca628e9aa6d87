// `mailroom relay` runs from one bundled file (dist/commands/relay.bundle.js, made by `pnpm build`)
// when it is as new as what it was made from, and from its modules otherwise.
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { z } from 'zod/v4';
import { createTestBroker, createTestDatabase, spawnNode, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { relayBundleUsable } from '../src/relay-bundle.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const LOG_LOADS = fileURLToPath(new URL('./fixtures/log-loads.mjs', import.meta.url));
const WAIT = { timeout: 20_000, interval: 50 };

let db: TestDatabase;
let broker: TestBroker;
beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  await broker?.close();
  await db?.close();
});

describe('the relay bundle', () => {
  it('is what `mailroom relay` loads (no module of the packages or their dependencies), and the relay publishes and serves /healthz and /metrics', async () => {
    const exchange = broker.name('bundle');
    const queue = await broker.queueFor(exchange);
    const received = broker.collect(queue);
    const { databaseUrl, amqpUrl } = testUrls();
    const relay = spawnNode(CLI, ['relay'], {
      MAILROOM_DATABASE_URL: databaseUrl,
      MAILROOM_AMQP_URL: amqpUrl,
      MAILROOM_SCHEMA: db.schema,
      MAILROOM_HTTP_HOST: '127.0.0.1',
      MAILROOM_HTTP_PORT: '0',
      MAILROOM_LOG_LEVEL: 'warn',
      NODE_OPTIONS: `--import=${pathToFileURL(LOG_LOADS).href}`,
    });
    try {
      const port = await vi.waitFor(() => {
        const match = /"event":"listening","port":(\d+)/.exec(relay.output());
        if (!match) throw new Error(`not listening yet:\n${relay.output()}`);
        return Number(match[1]);
      }, WAIT);
      const Event = defineMessage('bundle.checked', z.object({ n: z.number() }), { exchange });
      const message = Event.create({ n: 1 });
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        await enqueue(client, [message], { schema: db.schema });
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      await received.waitForCount(1);
      expect(received.ids()).toEqual([message.messageId]);

      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect([health.status, await health.text()]).toEqual([200, 'ok\n']);
      await vi.waitFor(async () => {
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        expect(metrics).toMatch(/^mailroom_relay_published_total 1$/m);
      }, WAIT);

      // What the process read to get here, after its re-exec: the CLI's entry, the bundle, nothing else of mailroom or node_modules.
      const loaded = [...relay.output().matchAll(/^loaded (\S+)$/gm)].map((m) => m[1] ?? '');
      const lastStart = loaded.lastIndexOf(pathToFileURL(CLI).href);
      expect(lastStart, 'the CLI is loaded again after its re-exec').toBeGreaterThan(0);
      const afterReExec = loaded.slice(lastStart);
      expect(afterReExec, 'the relay bundle is missing or older than its inputs: run `pnpm build`').toContain(
        new URL('../dist/commands/relay.bundle.js', import.meta.url).href,
      );
      expect(afterReExec.filter((url) => /\/node_modules\/|\/packages\/(core|outbox|dlq)\/|\/dist\/commands\/relay\.js$/.test(url))).toEqual([]);
    } finally {
      await received.stop();
      relay.kill('SIGTERM');
      expect((await relay.exited).code, relay.output()).toBe(0);
    }
  });

  it('keeps one UsageError with the CLI: a bad argument is bad usage (exit 2)', async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const child = spawnNode(CLI, ['relay', 'extra'], { MAILROOM_DATABASE_URL: databaseUrl, MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: db.schema });
    const { code } = await child.exited;
    expect(child.output()).toContain('mailroom relay: unexpected argument extra');
    expect(code).toBe(2);
  });
});

describe('relayBundleUsable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-bundle-'));
  const file = (name: string): string => join(dir, name);
  const bundle = pathToFileURL(file('commands/relay.bundle.js'));
  const inputs = pathToFileURL(file('commands/relay.bundle.json'));
  const setTime = (name: string, seconds: number): void => utimesSync(file(name), seconds, seconds);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is true while every input that exists is older than the bundle; false once one is newer, or without the bundle or its list', () => {
    mkdirSync(file('commands'));
    expect(relayBundleUsable(bundle, inputs)).toBe(false);
    for (const name of ['a.js', 'b.js', 'commands/relay.bundle.js']) writeFileSync(file(name), '');
    expect(relayBundleUsable(bundle, inputs)).toBe(false);
    // An input that is not there (an installed package has no workspace around it) is no reason to refuse the bundle.
    writeFileSync(file('commands/relay.bundle.json'), JSON.stringify({ inputs: ['../a.js', '../b.js', '../gone.js'] }));
    setTime('a.js', 1_000);
    setTime('b.js', 1_000);
    setTime('commands/relay.bundle.js', 2_000);
    expect(relayBundleUsable(bundle, inputs)).toBe(true);
    setTime('b.js', 3_000);
    expect(relayBundleUsable(bundle, inputs)).toBe(false);
    setTime('commands/relay.bundle.js', 3_000);
    expect(relayBundleUsable(bundle, inputs)).toBe(true);
  });
});
