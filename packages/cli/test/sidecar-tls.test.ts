// The relay sidecar over mutual TLS (issue 9, defect 13): MAILROOM_AMQP_TLS_* give the CA, the
// client certificate and key; MAILROOM_AMQP_AUTH=external asks for SASL EXTERNAL. The broker here
// listens without TLS, so a TLS terminator in front of it plays the broker's TLS side and demands
// a client certificate signed by the test CA.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, spawnNode, testUrls, type Child, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));

let dir: string;
let server: Server;
let port: number;
let db: TestDatabase;
let broker: TestBroker;
const sockets = new Set<Socket>();
const children: Child[] = [];

function makePki(): void {
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=mailroom test CA');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  for (const [name, cn] of [
    ['server', 'localhost'],
    ['client', 'guest'],
  ] as const) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', 'san.ext');
  }
  // The client key again, encrypted, for MAILROOM_AMQP_TLS_KEY_PASSPHRASE.
  ssl('pkey', '-in', 'client.key', '-out', 'client-encrypted.key', '-aes256', '-passout', 'pass:s3cret-Passphrase');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mailroom-sidecar-tls-'));
  makePki();
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  const upstreamUrl = new URL(testUrls().amqpUrl);
  server = createServer({ cert: read('server.crt'), key: read('server.key'), ca: read('ca.crt'), requestCert: true, rejectUnauthorized: true }, (tlsSocket) => {
    const upstream = connect(Number(upstreamUrl.port || 5672), upstreamUrl.hostname);
    sockets.add(tlsSocket).add(upstream);
    tlsSocket.pipe(upstream).pipe(tlsSocket);
    tlsSocket.on('error', () => upstream.destroy());
    upstream.on('error', () => tlsSocket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
  db = await createTestDatabase();
  broker = await createTestBroker();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await broker?.close();
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
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
