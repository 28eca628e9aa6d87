// What the demo and the end-to-end test use to run the example services as real processes:
// start them, talk HTTP to them, run the mailroom CLI, wait for convergence, clean up.
import { spawn, execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import pg from 'pg';
import { redactUrl } from '@mailroom/core';
import { consumerTopology } from './kit.mjs';

/** The mailroom CLI's entry point (the `mailroom` bin of the workspace package). */
export const MAILROOM_CLI = fileURLToPath(new URL('./node_modules/mailroom/dist/main.js', import.meta.url));

const running = new Set();
// Delay queues by work queue, as the services reported them in their `listening` line (their
// consumer handle's `delayQueues`): names a consumer derives are learnt, never re-derived here.
const reportedDelayQueues = new Map();
// A demo that fails half-way must not leave services behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts `node <script>` (or the mailroom CLI with `args`) and resolves once it printed its
 * `{"event":"listening","port":N}` line. `onLine` sees every stderr/stdout line (for --verbose).
 */
export async function startProcess(name, script, { env = {}, args = [], onLine, timeoutMs = 20_000 } = {}) {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const lines = [];
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  let onListening;
  const listening = new Promise((resolve) => (onListening = resolve));
  const read = (stream) => {
    let rest = '';
    stream.on('data', (chunk) => {
      rest += chunk.toString();
      let i;
      while ((i = rest.indexOf('\n')) >= 0) {
        const line = rest.slice(0, i);
        rest = rest.slice(i + 1);
        lines.push(line);
        if (lines.length > 2000) lines.shift();
        onLine?.(name, line);
        if (line.startsWith('{"event":"listening"')) {
          const { port, queue, delayQueues } = JSON.parse(line);
          if (queue !== undefined) reportedDelayQueues.set(queue, delayQueues);
          onListening(port);
        }
      }
    });
  };
  read(child.stdout);
  read(child.stderr);
  const tail = () => lines.slice(-15).join('\n');
  const port = await Promise.race([
    listening,
    exited.then(({ code }) => {
      throw new Error(`${name} exited with code ${code} before listening:\n${tail()}`);
    }),
    sleep(timeoutMs).then(() => {
      throw new Error(`${name} did not start within ${timeoutMs} ms:\n${tail()}`);
    }),
  ]);
  return {
    name,
    port,
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    output: () => lines.join('\n'),
    tail,
    /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null when killed). */
    async stop(graceMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const result = await exited;
      clearTimeout(timer);
      return result.code;
    },
  };
}

/** Runs the mailroom CLI to completion. */
export function runMailroom(args, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAILROOM_CLI, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

/** A JSON request; resolves with `{ status, body }`. */
export async function request(method, url, body) {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const json = (res.headers.get('content-type') ?? '').includes('json');
  return { status: res.status, body: text === '' ? null : json ? JSON.parse(text) : text };
}

/** Like `request`, but throws unless the status is 2xx. */
export async function call(method, url, body) {
  const res = await request(method, url, body);
  if (res.status < 200 || res.status > 299) throw new Error(`${method} ${url} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Polls `check` (truthy = done) until `timeoutMs`; resolves with the milliseconds it took. */
export async function waitUntil(what, check, timeoutMs) {
  const started = Date.now();
  for (;;) {
    let last;
    try {
      if (await check()) return Date.now() - started;
    } catch (error) {
      last = error;
    }
    if (Date.now() - started > timeoutMs) {
      throw new Error(`${what}: did not converge within ${timeoutMs} ms${last ? ` (last error: ${last.message})` : ''}`);
    }
    await sleep(50);
  }
}

/**
 * Queue and exchange names an example run declares, for the clean-up: each service's work and
 * dead-letter queue and exchange (named by `consumerTopology`), the delay queues its consumer
 * reported while it ran, and the given exchanges.
 */
export function brokerNames(prefix, services, exchanges) {
  const queues = [];
  const allExchanges = [...exchanges];
  for (const service of services) {
    const topology = consumerTopology(prefix, service);
    queues.push(topology.queue, topology.deadLetters.queue, ...(reportedDelayQueues.get(topology.queue) ?? []));
    allExchanges.push(topology.deadLetters.exchange);
  }
  return { queues: [...new Set(queues)], exchanges: [...new Set(allExchanges)] };
}

/** Deletes the queues and exchanges of a run (they are durable, so they would outlive it). */
export async function cleanupBroker(amqpUrl, { queues, exchanges }) {
  const connection = await amqp.connect(amqpUrl);
  connection.on('error', () => undefined);
  try {
    for (const name of queues) {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      await channel.deleteQueue(name).catch(() => undefined);
      await channel.close().catch(() => undefined);
    }
    for (const name of exchanges) {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      await channel.deleteExchange(name).catch(() => undefined);
      await channel.close().catch(() => undefined);
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
}

function unreachable(lines) {
  const error = new Error(lines.join('\n'));
  error.unreachable = true;
  return error;
}

/** Checks PostgreSQL and RabbitMQ answer; throws saying how to start them when they do not. */
export async function checkServices(databaseUrl, amqpUrl) {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    throw unreachable(
      [
        `cannot reach PostgreSQL at ${redactUrl(databaseUrl)} (${error.message}).`,
        '  Start it, e.g.  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
        '  or              docker compose -f examples/docker-compose.yml up -d postgres rabbitmq',
        '  or point MAILROOM_DATABASE_URL at one (the user needs CREATE DATABASE).',
      ],
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  try {
    const connection = await amqp.connect(amqpUrl, { timeout: 5000 });
    await connection.close();
  } catch (error) {
    throw unreachable(
      [
        `cannot reach RabbitMQ at ${redactUrl(amqpUrl)} (${error.message}).`,
        '  Start it, e.g.  rabbitmq-server -detached',
        '  or              docker compose -f examples/docker-compose.yml up -d postgres rabbitmq',
        '  or point MAILROOM_AMQP_URL at one.',
      ],
    );
  }
}
