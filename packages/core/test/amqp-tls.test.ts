// TLS to RabbitMQ: a CA, a client certificate and key go through createAmqpConnection. The broker
// here listens without TLS, so a TLS terminator in front of it plays the broker's TLS side and
// demands a client certificate signed by the test CA (mutual TLS).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MailroomError, createAmqpConnection } from '@mailroom/core';
import { testUrls } from '../../../test/helpers.js';

interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

function makePki(dir: string): Pki {
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
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  return { ca: read('ca.crt'), serverCert: read('server.crt'), serverKey: read('server.key'), clientCert: read('client.crt'), clientKey: read('client.key') };
}

describe('TLS to RabbitMQ', () => {
  let dir: string;
  let pki: Pki;
  let server: Server;
  let port: number;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mailroom-tls-'));
    pki = makePki(dir);
    const broker = new URL(testUrls().amqpUrl);
    server = createServer({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: true }, (tlsSocket) => {
      const upstream = connect(Number(broker.port || 5672), broker.hostname);
      sockets.add(tlsSocket).add(upstream);
      tlsSocket.pipe(upstream).pipe(tlsSocket);
      tlsSocket.on('error', () => upstream.destroy());
      upstream.on('error', () => tlsSocket.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  const url = (): string => `amqps://guest:guest@localhost:${port}`;

  it('connects with a CA, a client certificate and its key (mutual TLS)', async () => {
    const connection = createAmqpConnection({ url: url(), tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    try {
      const model = await connection.connectOnce();
      const channel = await model.createChannel();
      await channel.checkQueue('amq.rabbitmq.reply-to').catch(() => undefined);
      expect(connection.connected).toBe(true);
    } finally {
      await connection.close();
    }
  });

  it('fails with a clear error without the client certificate, or without the CA', async () => {
    for (const tls of [{ ca: pki.ca }, { cert: pki.clientCert, key: pki.clientKey }]) {
      const connection = createAmqpConnection({ url: url(), tls });
      const error = await connection.connectOnce().catch((e: unknown) => e);
      await connection.close();
      expect(error).toBeInstanceOf(MailroomError);
      expect((error as Error).message).toMatch(/Cannot connect to RabbitMQ at amqps:\/\/guest:\*\*\*@localhost/);
    }
  });

  it('offers SASL EXTERNAL when asked (this broker has no EXTERNAL plugin, so it refuses the mechanism by name)', async () => {
    const connection = createAmqpConnection({ url: url(), tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey }, auth: 'external' });
    const error = await connection.connectOnce().catch((e: unknown) => e);
    await connection.close();
    expect(String((error as Error).message)).toMatch(/EXTERNAL/);
  });

  it('fails over to the next URL of a cluster', async () => {
    const connection = createAmqpConnection({ url: ['amqp://guest:guest@127.0.0.1:1', testUrls().amqpUrl], reconnectDelayMs: 10 });
    try {
      await connection.get();
      expect(connection.connected).toBe(true);
      expect(connection.displayUrl).toContain('127.0.0.1:1');
    } finally {
      await connection.close();
    }
  });
});
