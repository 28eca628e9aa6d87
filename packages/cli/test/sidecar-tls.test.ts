// The relay sidecar over mutual TLS (issue 9, defect 13): MAILROOM_AMQP_TLS_* give the CA, the
// client certificate and key; MAILROOM_AMQP_AUTH=external asks for SASL EXTERNAL. The broker here
// listens without TLS, so a TLS terminator in front of it plays the broker's TLS side and demands
// a client certificate signed by the test CA.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, spawnNode, startTlsTerminator, testUrls, type Child, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));

let tls: Awaited<ReturnType<typeof startTlsTerminator>>;
let dir: string;
let port: number;
let db: TestDatabase;
let broker: TestBroker;
const children: Child[] = [];

beforeAll(async () => {
  tls = await startTlsTerminator();
  dir = tls.pki.dir;
  port = tls.port;
  db = await createTestDatabase();
  broker = await createTestBroker();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await tls?.close();
  await broker?.close();
  await db?.close();
});

function startRelay(env: Record<string, string>): Child {
  const child = spawnNode(CLI, ['relay'], {
    MAILROOM_DATABASE_URL: testUrls().databaseUrl,
    MAILROOM_AMQP_URL: `amqps://guest:guest@localhost:${port}`,
    MAILROOM_SCHEMA: db.schema,
    MAILROOM_HTTP_HOST: '127.0.0.1',
    MAILROOM_HTTP_PORT: '0',
    MAILROOM_POLL_INTERVAL_MS: '200',
    ...env,
  });
  children.push(child);
  return child;
}

const file = (name: string): string => join(dir, name);

describe('mailroom relay over TLS', () => {
  it('publishes through a terminator that demands a client certificate, with the CA, certificate and (encrypted) key from files', async () => {
    const exchange = broker.name('tls');
    const queue = await broker.queueFor(exchange, '#');
    const received = broker.collect(queue);
    const Event = defineMessage('tls.event', z.object({ n: z.number() }), { exchange });
    const events = Array.from({ length: 20 }, (_, n) => Event.create({ n }));
    const client = await db.pool.connect();
    await client.query('BEGIN');
    await enqueue(client, events, { schema: db.schema });
    await client.query('COMMIT');
    client.release();
    const relay = startRelay({
      MAILROOM_AMQP_TLS_CA_FILE: file('ca.crt'),
      MAILROOM_AMQP_TLS_CERT_FILE: file('client.crt'),
      MAILROOM_AMQP_TLS_KEY_FILE: file('client-encrypted.key'),
      MAILROOM_AMQP_TLS_KEY_PASSPHRASE: 's3cret-Passphrase',
    });
    await received.waitForCount(20);
    expect(new Set(received.ids())).toEqual(new Set(events.map((e) => e.messageId)));
    relay.kill('SIGTERM');
    expect((await relay.exited).code).toBe(0);
    expect(relay.output()).not.toContain('s3cret-Passphrase');
    await received.stop();
  });

  it('without the client certificate the terminator refuses it: the relay keeps retrying and says why', async () => {
    const relay = startRelay({ MAILROOM_AMQP_TLS_CA_FILE: file('ca.crt') });
    await vi.waitFor(() => expect(relay.output()).toMatch(/AMQP connect to amqps:\/\/guest:\*\*\*@localhost:\d+ failed/), { timeout: 20_000, interval: 50 });
    expect(relay.process.exitCode).toBeNull();
    relay.kill('SIGTERM');
    expect((await relay.exited).code).toBe(0);
  });

  it('MAILROOM_AMQP_AUTH=external offers SASL EXTERNAL (this broker has no EXTERNAL plugin, so it refuses the mechanism by name)', async () => {
    const relay = startRelay({
      MAILROOM_AMQP_TLS_CA_FILE: file('ca.crt'),
      MAILROOM_AMQP_TLS_CERT_FILE: file('client.crt'),
      MAILROOM_AMQP_TLS_KEY_FILE: file('client.key'),
      MAILROOM_AMQP_AUTH: 'external',
    });
    await vi.waitFor(() => expect(relay.output()).toMatch(/EXTERNAL/), { timeout: 20_000, interval: 50 });
    relay.kill('SIGTERM');
    expect((await relay.exited).code).toBe(0);
  });

  it('refuses settings that cannot work, by variable name', async () => {
    for (const [env, message] of [
      [{ MAILROOM_AMQP_TLS_CERT_FILE: file('client.crt') }, /MAILROOM_AMQP_TLS_CERT_FILE and MAILROOM_AMQP_TLS_KEY_FILE go together/],
      [{ MAILROOM_AMQP_AUTH: 'external' }, /MAILROOM_AMQP_AUTH=external needs a client certificate/],
      [{ MAILROOM_AMQP_TLS_CA_FILE: file('ca.crt'), MAILROOM_AMQP_URL: testUrls().amqpUrl }, /need amqps:\/\/ URLs/],
      [{ MAILROOM_AMQP_TLS_CA_FILE: file('missing.crt') }, /MAILROOM_AMQP_TLS_CA_FILE: cannot read .*missing\.crt/],
      [{ MAILROOM_AMQP_AUTH: 'kerberos' }, /MAILROOM_AMQP_AUTH/],
    ] as const) {
      const relay = startRelay(env);
      const exit = await relay.exited;
      expect(exit.code).not.toBe(0);
      expect(relay.output()).toMatch(message);
    }
  });
});
