// Plumbing shared by the example services: one database per service, the service's own
// migrations, a tiny JSON HTTP server and the process lifecycle. Nothing here is mailroom's
// business; it lives in one file so that each service shows only what mailroom asks of it.
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import pg from 'pg';
import { isMailroomError, migrate } from '@mailroom/core';

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** Reads a required environment variable, saying which one is missing. */
export function requireEnv(name) {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
}

/** The URL of `database` on the server of `baseUrl` (same host, user and password). */
export function databaseUrlFor(baseUrl, database) {
  const url = new URL(baseUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

const DATABASE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function checkName(database) {
  if (!DATABASE_NAME.test(database)) throw new Error(`invalid database name ${JSON.stringify(database)}`);
  return database;
}

/** Creates `database` on the server of `baseUrl` unless it exists. Safe when run concurrently. */
export async function ensureDatabase(baseUrl, database) {
  const client = new pg.Client({ connectionString: baseUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [checkName(database)]);
    if (rowCount === 0) {
      // 42P04 duplicate_database, 23505 when two CREATEs race on the catalog.
      await client.query(`CREATE DATABASE "${database}"`).catch((error) => {
        if (error.code === '42501') {
          throw new Error(`cannot create database ${database}: the user of ${baseUrl.replace(/\/\/[^@/]*@/, '//…@')} lacks CREATEDB; create it yourself (CREATE DATABASE ${database}) or use a user that may`);
        }
        if (error.code !== '42P04' && error.code !== '23505') throw error;
      });
      return true;
    }
    return false;
  } finally {
    await client.end();
  }
}

/** Drops `database` (closing its connections) if it exists. */
export async function dropDatabase(baseUrl, database) {
  const client = new pg.Client({ connectionString: baseUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${checkName(database)}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

/** A pg Pool whose idle-client errors are logged rather than crashing the process. */
export function openPool(connectionString, log, max = 10) {
  const pool = new pg.Pool({ connectionString, max });
  pool.on('error', (error) => log(`idle database connection failed: ${error.message}`));
  return pool;
}

/**
 * Applies the service's own numbered SQL files (`<dir>/NNN-*.sql`) once each, under an advisory
 * lock so that two instances starting together do not race, then mailroom's migrations (outbox,
 * inbox and dead-letter tables in the schema `mailroom`). Each service owns its database and
 * therefore its schema history: no other service ever reads these tables.
 */
export async function migrateService(pool, dir) {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const client = await pool.connect();
  const applied = [];
  try {
    await client.query('BEGIN');
    await client.query("SELECT pg_advisory_xact_lock(hashtext('example-service-migrations'))");
    await client.query('CREATE TABLE IF NOT EXISTS service_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    const { rows } = await client.query('SELECT name FROM service_migrations');
    const done = new Set(rows.map((r) => r.name));
    for (const file of files) {
      if (done.has(file)) continue;
      await client.query(await readFile(join(dir, file), 'utf8'));
      await client.query('INSERT INTO service_migrations (name) VALUES ($1)', [file]);
      applied.push(file);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
  const mailroom = await migrate(pool, { schema: 'mailroom' });
  return { service: applied, mailroom: mailroom.applied.length };
}

/** An error with an HTTP status, for the request handlers. */
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** A logger writing `[service] text` lines to stderr (stdout carries the `listening` line). */
export function serviceLogger(service) {
  return (text) => process.stderr.write(`${new Date().toISOString().slice(11, 23)} [${service}] ${text}\n`);
}

/**
 * Serves JSON routes: `[method, /regex/, async ({ params, body, query }) => result]`, plus
 * `GET /healthz` for every service. A result is sent as 200 JSON (or `{ status, body }`); an
 * HttpError as its status. Prints
 * `{"event":"listening","service":…,"port":…, ...announce}` on stdout once listening (PORT,
 * default a free port); `announce` tells the demo what the service declared (its consumer's
 * queue and delay queues), so the clean-up removes exactly that.
 */
export async function startHttp(service, serviceRoutes, log, announce = {}) {
  const routes = [...serviceRoutes, ['GET', /^\/healthz$/, async () => ({ ok: true })]];
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      let status = 200;
      let body;
      try {
        const route = routes.find(([method, pattern]) => method === req.method && pattern.test(url.pathname));
        if (!route) throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
        const chunks = [];
        for await (const chunk of req) chunks.push(chunk);
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = {};
        try {
          parsed = text === '' ? {} : JSON.parse(text);
        } catch {
          throw new HttpError(400, 'the body is not JSON');
        }
        const params = route[1].exec(url.pathname)?.groups ?? {};
        const result = await route[2]({ params, body: parsed, query: url.searchParams });
        if (result && typeof result === 'object' && 'status' in result && 'body' in result) ({ status, body } = result);
        else body = result ?? {};
      } catch (error) {
        // A payload the message contract refuses is the caller's mistake.
        status = error instanceof HttpError ? error.status : isMailroomError(error, 'INVALID_PAYLOAD') ? 400 : 500;
        body = { error: error.message };
        if (status === 500) log(`${req.method} ${url.pathname} failed: ${error.stack ?? error.message}`);
      }
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    })();
  });
  server.keepAliveTimeout = 1000;
  server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  process.stdout.write(`${JSON.stringify({ event: 'listening', service, port, ...announce })}\n`);
  return {
    port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Stops the parts of a service in the order that loses nothing: HTTP first (no new work), then
 * the consumer (finishes its handlers), the relay (commits its batch), and the pool last.
 */
export async function stopService({ http, consumer, relay, pool }) {
  await http?.close();
  await consumer?.stop();
  await relay?.stop();
  await pool?.end();
}

/**
 * Runs a service: `start()` returns `{ stop }`. SIGTERM or SIGINT stops it (consumer and relay
 * finish what they hold, HTTP closes) and the process exits 0; a failed start exits 1.
 */
export function runService(service, start) {
  const log = serviceLogger(service);
  start(log).then(
    (running) => {
      let stopping = false;
      const shutdown = (signal) => {
        if (stopping) return;
        stopping = true;
        log(`${signal}: stopping`);
        running.stop().then(
          () => {
            log('stopped');
            process.exit(0);
          },
          (error) => {
            log(`stop failed: ${error.message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    },
    (error) => {
      log(`failed to start: ${error.stack ?? error.message}`);
      process.exit(1);
    },
  );
}

/** The consumer options every example service shares: its own queue and dead letters under the run's prefix. */
export function consumerTopology(prefix, service) {
  return {
    queue: `${prefix}.${service}`,
    deadLetters: { exchange: `${prefix}.${service}.dead-letters`, queue: `${prefix}.${service}.dead-letters` },
    // Quick retries keep the demo short; production services keep the default backoff.
    retry: { maxAttempts: 4, initialDelayMs: 300 },
  };
}
