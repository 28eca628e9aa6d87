// The observable sidecar (issue 13): /metrics with failed batches and outages by link, build and
// process info and the dead-letter gauges; /readyz naming the link that is down; JSON log lines
// on request; `mailroom --version`.
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createDeadLetterStore } from '@mailroom/dlq';
import { createTestDatabase, spawnNode, startTcpProxy, testUrls, type TestDatabase } from '../../../test/helpers.js';
import { startRelayProcess, type RelayProcess } from '../../outbox/test/relay-process.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const WAIT = { timeout: 30_000, interval: 100 };

let db: TestDatabase;
const cleanups: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await db?.close();
});

/** A sample of a metric with exactly these labels (`''` for none). */
function sample(text: string, name: string, labels = ''): number {
  const prefix = labels === '' ? `${name} ` : `${name}{${labels}} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? Number.NaN : Number(line.slice(prefix.length));
}

interface ReadyBody {
  ready: boolean;
  down: string[];
  reason?: string;
  links: Record<string, { up: boolean; error?: string }>;
}

async function readyz(relay: RelayProcess): Promise<{ status: number; body: ReadyBody }> {
  const res = await fetch(`http://127.0.0.1:${await relay.port()}/readyz`);
  return { status: res.status, body: JSON.parse(await res.text()) as ReadyBody };
}

describe('the relay sidecar', () => {
  it('serves build, process and dead-letter metrics; /readyz names the broker link while it is down and the outage is counted; logs are JSON lines', async () => {
    const store = createDeadLetterStore({ db: db.pool, schema: db.schema });
    for (const reason of ['invalid-payload', 'invalid-payload', 'handler-failed'] as const) {
      await store.record({ messageId: randomUUID(), source: 'orders', reason, error: `boom ${reason}`, type: 'order.placed', payload: { n: 1 } });
    }
    const { amqpUrl } = testUrls();
    const mq = await startTcpProxy(amqpUrl, 5672);
    cleanups.push(() => mq.close());
    const name = `sidecar-obs-${process.pid}`;
    const relay = startRelayProcess(db.schema, { MAILROOM_AMQP_URL: mq.url(amqpUrl), MAILROOM_LOG_FORMAT: 'json', MAILROOM_RELAY_NAME: name });
    cleanups.push(() => relay.kill());
    await vi.waitFor(async () => expect((await readyz(relay)).body).toMatchObject({ ready: true, down: [] }), WAIT);

    const metrics = await relay.metrics();
    const build = metrics.split('\n').find((l) => l.startsWith('mailroom_build_info{'));
    expect(build).toBe(`mailroom_build_info{arch="${process.arch}",instance="${name}",node="${process.version}",platform="${process.platform}",version="${VERSION}"} 1`);
    expect(sample(metrics, 'process_start_time_seconds')).toBeGreaterThan(Date.now() / 1000 - 600);
    expect(sample(metrics, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(sample(metrics, 'process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);
    expect(sample(metrics, 'mailroom_dead_letters_stored')).toBe(3);
    const groups = await store.groups();
    const invalid = groups.find((g) => g.reason === 'invalid-payload');
    expect(sample(metrics, 'mailroom_dead_letters', `group="${invalid?.fingerprint}",reason="invalid-payload",source="orders"`)).toBe(2);
    expect(sample(metrics, 'mailroom_relay_outages_total', 'link="rabbitmq"')).toBe(0);
    expect(sample(metrics, 'mailroom_relay_batches_failed_total', 'link="rabbitmq"')).toBe(0);

    mq.setDown(true);
    await vi.waitFor(async () => {
      const { status, body } = await readyz(relay);
      expect(status).toBe(503);
      expect(body.down).toEqual(['rabbitmq']);
      expect(body.reason).toMatch(/^rabbitmq is down: \S/);
      expect(body.links.postgres?.up).toBe(true);
    }, WAIT);
    await vi.waitFor(async () => expect(sample(await relay.metrics(), 'mailroom_relay_outages_total', 'link="rabbitmq"')).toBe(1), WAIT);
    mq.setDown(false);
    await vi.waitFor(async () => expect((await readyz(relay)).body).toMatchObject({ ready: true, down: [] }), WAIT);
    expect((await readyz(relay)).body.reason).toBeUndefined();
    expect(sample(await relay.metrics(), 'mailroom_relay_outages_total', 'link="rabbitmq"')).toBe(1);

    relay.kill('SIGTERM');
    expect((await relay.exited).code).toBe(0);
    // Every line, stdout's and stderr's, is one JSON object; the log lines have the four keys.
    const lines = relay.output().split('\n').filter((l) => l !== '');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const logs = parsed.filter((p) => 'msg' in p);
    expect(logs.length).toBeGreaterThanOrEqual(4);
    for (const log of logs) {
      expect(Object.keys(log).slice(0, 4)).toEqual(['time', 'level', 'name', 'msg']);
      expect(['debug', 'info', 'warn', 'error']).toContain(log.level);
      expect(Number.isNaN(Date.parse(String(log.time)))).toBe(false);
    }
    expect(logs.some((l) => l.level === 'warn' && /rabbitmq is down/.test(String(l.msg)))).toBe(true);
    expect(logs.some((l) => /relay exited cleanly/.test(String(l.msg)))).toBe(true);
  });

  it('refuses MAILROOM_LOG_FORMAT other than text or json, naming the variable', async () => {
    const relay = startRelayProcess(db.schema, { MAILROOM_LOG_FORMAT: 'xml' });
    cleanups.push(() => relay.kill());
    const exit = await relay.exited;
    expect(exit.code).toBe(1);
    expect(relay.output()).toMatch(/MAILROOM_LOG_FORMAT: Invalid option: expected one of "text"\|"json"/);
  });

  it('with MAILROOM_LOG_FORMAT=json, an invalid configuration is reported as a JSON line too', async () => {
    const relay = startRelayProcess(db.schema, { MAILROOM_LOG_FORMAT: 'json', MAILROOM_BATCH_SIZE: 'lots' });
    cleanups.push(() => relay.kill());
    expect((await relay.exited).code).toBe(1);
    const line = JSON.parse(relay.output().trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'error', name: 'mailroom relay' });
    expect(line.msg).toContain('MAILROOM_BATCH_SIZE must be a whole number');
  });
});

describe('mailroom --version', () => {
  it('prints the version of package.json, as --version, -v and version', async () => {
    for (const flag of ['--version', '-v', 'version']) {
      const child = spawnNode(CLI, [flag], {});
      expect((await child.exited).code).toBe(0);
      expect(child.output()).toBe(`${VERSION}\n`);
    }
    const help = spawnNode(CLI, ['--help'], {});
    await help.exited;
    expect(help.output()).toContain('mailroom --version');
  });
});
