// Shared helpers for the integration tests: a fresh schema per test file, a random prefix for
// every exchange and queue, child processes and a TCP proxy that can cut a link (polling is vi.waitFor).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import * as amqp from 'amqplib';
import pg from 'pg';
import { inject, vi } from 'vitest';
import { migrate } from '@mailroom/core';

/** The URLs the global setup found (env, testcontainers or local defaults). */
export function testUrls(): { databaseUrl: string; amqpUrl: string } {
  return { databaseUrl: inject('databaseUrl'), amqpUrl: inject('amqpUrl') };
}

/** A short random name part, safe for schemas, exchanges and queues. */
export function randomName(prefix = 't'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** A migrated schema of its own, with a pool; `close()` drops it. */
export interface TestDatabase {
  schema: string;
  pool: pg.Pool;
  databaseUrl: string;
  close(): Promise<void>;
}

/** Creates and migrates a fresh schema for one test file (or one test). */
export async function createTestDatabase(options: { migrate?: boolean; max?: number } = {}): Promise<TestDatabase> {
  const { databaseUrl } = testUrls();
  const schema = randomName('mr');
  const pool = new pg.Pool({ connectionString: databaseUrl, max: options.max ?? 10 });
  pool.on('error', () => undefined);
  if (options.migrate !== false) await migrate(pool, { schema });
  return {
    schema,
    pool,
    databaseUrl,
    async close() {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
      await pool.end().catch(() => undefined);
    },
  };
}

/** A broker handle for one test file: everything it declares carries a random prefix. */
export interface TestBroker {
  prefix: string;
  connection: amqp.ChannelModel;
  channel: amqp.Channel;
  /** Prefixes a name. */
  name(suffix: string): string;
  /** Declares a topic exchange and a queue bound to it with `pattern`; returns their names. */
  queueFor(exchange: string, pattern?: string, queueArgs?: Record<string, unknown>): Promise<string>;
  /** Collects messages from a queue until `stop()`; acks each. */
  collect(queue: string): Collected;
  close(): Promise<void>;
}

/** Messages a test consumer has received. */
export interface Collected {
  messages: amqp.ConsumeMessage[];
  ids(): string[];
  waitForCount(n: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Opens a broker connection for a test file. */
export async function createTestBroker(): Promise<TestBroker> {
  const { amqpUrl } = testUrls();
  const prefix = randomName('t');
  const connection = await amqp.connect(amqpUrl);
  connection.on('error', () => undefined);
  const channel = await connection.createChannel();
  const exchanges = new Set<string>();
  const queues = new Set<string>();
  return {
    prefix,
    connection,
    channel,
    name: (suffix) => `${prefix}.${suffix}`,
    async queueFor(exchange, pattern = '#', queueArgs = {}) {
      await channel.assertExchange(exchange, 'topic', { durable: true });
      exchanges.add(exchange);
      const queue = `${exchange}.q${queues.size}`;
      await channel.assertQueue(queue, { durable: true, arguments: queueArgs });
      await channel.bindQueue(queue, exchange, pattern);
      queues.add(queue);
      return queue;
    },
    collect(queue) {
      const messages: amqp.ConsumeMessage[] = [];
      let tag: string | undefined;
      let ch: amqp.Channel | undefined;
      const ready = (async () => {
        ch = await connection.createChannel();
        await ch.prefetch(500);
        const reply = await ch.consume(queue, (msg) => {
          if (msg) {
            messages.push(msg);
            ch?.ack(msg);
          }
        });
        tag = reply.consumerTag;
      })();
      return {
        messages,
        ids: () => messages.map((m) => String(m.properties.messageId)),
        async waitForCount(n, timeoutMs = 30_000) {
          await ready;
          await vi.waitFor(
            () => {
              if (messages.length < n) throw new Error(`${n} messages on ${queue} (have ${messages.length})`);
            },
            { timeout: timeoutMs, interval: 20 },
          );
        },
        async stop() {
          await ready;
          if (ch && tag) await ch.cancel(tag).catch(() => undefined);
          await ch?.close().catch(() => undefined);
        },
      };
    },
    async close() {
      const ch = await connection.createChannel().catch(() => undefined);
      for (const q of queues) await ch?.deleteQueue(q).catch(() => undefined);
      for (const e of exchanges) await ch?.deleteExchange(e).catch(() => undefined);
      await connection.close().catch(() => undefined);
    },
  };
}

/** A child process with its output kept and its exit awaited. */
export interface Child {
  process: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts `node <script> ...args` with extra environment; output is kept for assertions. */
export function spawnNode(script: string, args: string[], env: Record<string, string>): Child {
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return {
    process: child,
    output: () => out,
    exited,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** A TCP proxy in front of a service, whose link a test can cut. */
export interface TcpProxy {
  port: number;
  /** Replaces the host:port of `url` with the proxy's. */
  url(url: string): string;
  /** Destroys every open connection (new ones still pass). */
  cut(): void;
  /** While true, new connections are refused and open ones are destroyed. */
  setDown(down: boolean): void;
  /**
   * Goes down (as setDown(true)) once `bytes` more bytes went from clients to the service,
   * i.e. in the middle of whatever the client is sending then. Resolves when it went down.
   */
  downAfterUpstreamBytes(bytes: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts a TCP proxy to `target` (a URL whose host and port are used). */
export async function startTcpProxy(target: string, defaultPort: number): Promise<TcpProxy> {
  const t = new URL(target);
  const sockets = new Set<Socket>();
  let down = false;
  let trip: { remaining: number; fire: () => void } | undefined;
  const server: Server = createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: t.hostname, port: Number(t.port || defaultPort) });
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (chunk: Buffer) => {
      if (trip) {
        trip.remaining -= chunk.length;
        if (trip.remaining <= 0) {
          const fire = trip.fire;
          trip = undefined;
          fire();
        }
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const cut = (): void => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    port,
    url(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cut,
    setDown(value) {
      down = value;
      if (value) cut();
    },
    downAfterUpstreamBytes(bytes) {
      return new Promise<void>((resolve) => {
        trip = {
          remaining: bytes,
          fire: () => {
            down = true;
            cut();
            resolve();
          },
        };
      });
    },
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A TCP server that accepts and resets every connection: a link that keeps failing transiently. */
export async function startResettingServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.resetAndDestroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** PEM files of a test CA, a server certificate (localhost) and a client certificate (CN guest). */
export interface TestPki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** The client key encrypted with `passphrase`. */
  clientKeyEncrypted: string;
  passphrase: string;
}

/**
 * A mutual-TLS terminator in front of the test broker: it plays the broker's TLS side and demands
 * a client certificate signed by a CA made here with openssl. `close()` removes everything.
 */
export async function startTlsTerminator(): Promise<{ pki: TestPki; port: number; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-tls-'));
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
  const passphrase = 's3cret-Passphrase';
  ssl('pkey', '-in', 'client.key', '-out', 'client-encrypted.key', '-aes256', '-passout', `pass:${passphrase}`);
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  const pki: TestPki = {
    dir,
    ca: read('ca.crt'),
    serverCert: read('server.crt'),
    serverKey: read('server.key'),
    clientCert: read('client.crt'),
    clientKey: read('client.key'),
    clientKeyEncrypted: read('client-encrypted.key'),
    passphrase,
  };
  const broker = new URL(testUrls().amqpUrl);
  const sockets = new Set<Socket>();
  const server = createTlsServer({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: true }, (tlsSocket) => {
    const upstream = connect(Number(broker.port || 5672), broker.hostname);
    sockets.add(tlsSocket).add(upstream);
    tlsSocket.pipe(upstream).pipe(tlsSocket);
    tlsSocket.on('error', () => upstream.destroy());
    upstream.on('error', () => tlsSocket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    pki,
    port: (server.address() as { port: number }).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
