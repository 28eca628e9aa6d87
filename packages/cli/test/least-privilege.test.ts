// Least privilege: a login role per component (producer, relay, consumer, sink, operator) with
// exactly the grants of core's COMPONENT_GRANTS (applied by the owner through grantsScript) runs
// its real path; a role missing one grant gets a clear error, never a hot loop, and resumes once
// the grant is back. Roles are cluster-wide: each has a random name and is dropped at the end.
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { ConfirmChannel } from 'amqplib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage, migrate, type Logger, type OutgoingMessage } from '@mailroom/core';
import { MAILROOM_COMPONENTS, assertGrants, componentGrants, envelopeHeaders, grantsScript, missingGrants, type MailroomComponent } from '@mailroom/core/internal';
import { createDeadLetterSink, createDeadLetterStore } from '@mailroom/dlq';
import { listSagas, readSaga } from '@mailroom/saga';
import { NonRetryableError, createConsumer, handler, type Consumer } from '@mailroom/inbox';
import { cancelScheduled, createRelay, enqueue, listHistory, type Relay } from '@mailroom/outbox';
import { createTestBroker, randomName, spawnNode, testUrls, type TestBroker } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const { databaseUrl, amqpUrl } = testUrls();
const WAIT = { timeout: 30_000, interval: 50 } as const;
// How long a test watches a component run without its grant: long enough for a hot loop to show.
const WATCH_MS = 4000;

type Role = 'owner' | MailroomComponent;
const ROLES: readonly Role[] = ['owner', 'producer', 'relay', 'consumer', 'sink', 'operator'];

const schema = randomName('lp');
const tag = randomBytes(4).toString('hex');
const roleName = (role: Role): string => `mr_lp_${tag}_${role}`;
const password = randomBytes(12).toString('hex');
const admin = new pg.Pool({ connectionString: databaseUrl, max: 2 });
admin.on('error', () => undefined);
const pools = new Map<Role, pg.Pool>();
const pool = (role: Role): pg.Pool => pools.get(role) as pg.Pool;
const stoppers: Array<() => Promise<unknown>> = [];
const consumers: Consumer[] = [];
let broker: TestBroker;
let publisher: ConfirmChannel;
let exchange: string;

/** The URL of the test database, logged in as `role`. */
function urlOf(role: Role): string {
  const url = new URL(databaseUrl);
  url.username = roleName(role);
  url.password = password;
  return url.toString();
}

const Task = (ex: string) =>
  defineMessage('lp.task', z.object({ mode: z.enum(['ok', 'retry', 'fail', 'big']), pad: z.string().optional() }), { exchange: ex, routingKey: 'lp.task' });

/** The grants script for the five component roles, required grants only (the features' grants: grants-features.test.ts). */
const script = (): string =>
  grantsScript(schema, { producer: roleName('producer'), relay: roleName('relay'), consumer: roleName('consumer'), sink: roleName('sink'), operator: roleName('operator') });

/** Takes one privilege back, runs `fn`, then gives every documented grant back (the owner runs the script again). */
async function without<T>(role: MailroomComponent, privilege: string, table: string, fn: () => Promise<T>): Promise<T> {
  await admin.query(`REVOKE ${privilege} ON "${schema}".${table} FROM ${roleName(role)}`);
  try {
    return await fn();
  } finally {
    await pool('owner').query(script());
  }
}

/** Enqueues in a transaction of its own on a connection of `db`. */
async function enqueueWith(db: pg.Pool, messages: OutgoingMessage | OutgoingMessage[]): Promise<void> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, messages, { schema });
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

/** Schedules a message and cancels it, in one transaction of `db`'s (what a saga's timeout does). */
async function scheduleAndCancelWith(db: pg.Pool): Promise<void> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const message = Task(exchange).create({ mode: 'ok' });
    await enqueue(client, message, { schema, delay: 60_000 });
    if (!(await cancelScheduled(client, message.messageId, { schema }))) throw new Error('cancelScheduled found nothing to cancel');
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

/** Remembers a consumer, to stop it and delete its queues at the end. */
function track(consumer: Consumer): Consumer {
  consumers.push(consumer);
  stoppers.push(() => consumer.stop());
  return consumer;
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const result = await admin.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${sql}`, params);
  return Number(result.rows[0]?.n ?? 0);
}

/** Publishes a task straight to the exchange, as a relay would (for the tests that leave the relay out). */
async function publishTask(mode: 'ok' | 'fail'): Promise<string> {
  const messageId = randomUUID();
  const props = { messageId, type: 'lp.task', contentType: 'application/json', persistent: true, headers: envelopeHeaders({ key: null }) };
  await new Promise<void>((resolve, reject) => {
    publisher.publish(exchange, 'lp.task', Buffer.from(JSON.stringify({ mode })), props, (error: unknown) => (error ? reject(new Error('nacked')) : resolve()));
  });
  return messageId;
}

async function runCli(args: string[], role: Role): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(CLI, args, { MAILROOM_DATABASE_URL: urlOf(role), MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

/**
 * Watches failures for WATCH_MS and checks they are a clear error at a bounded rate: each names
 * the permission, and there are at most `max` (a hot loop makes hundreds a second).
 */
async function expectBoundedFailures(failures: string[], pattern: RegExp, max: number): Promise<void> {
  await vi.waitFor(() => expect(failures.length).toBeGreaterThan(0), WAIT);
  const first = failures.length;
  await new Promise((resolve) => setTimeout(resolve, WATCH_MS));
  for (const failure of failures) expect(failure).toMatch(pattern);
  expect(failures.length - first, `failures in ${WATCH_MS} ms: ${failures.length - first}`).toBeLessThanOrEqual(max);
}

beforeAll(async () => {
  const database = (await admin.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db as string;
  for (const role of ROLES) {
    await admin.query(`CREATE ROLE ${roleName(role)} LOGIN PASSWORD '${password}'`);
    pools.set(role, new pg.Pool({ connectionString: urlOf(role), max: role === 'consumer' ? 12 : 6 }));
    pool(role).on('error', () => undefined);
  }
  // The owner is no superuser: CREATE on the database (for the schema) is all it gets.
  await admin.query(`GRANT CREATE ON DATABASE "${database}" TO ${roleName('owner')}`);
  await migrate(pool('owner'), { schema });
  await pool('owner').query(script());
  broker = await createTestBroker();
  publisher = await broker.connection.createConfirmChannel();
  exchange = broker.name('events');
});

afterAll(async () => {
  for (const stop of stoppers.reverse()) await stop().catch(() => undefined);
  const ch = await broker.connection.createChannel();
  for (const c of consumers) {
    for (const q of [c.queue, ...c.delayQueues]) await ch.deleteQueue(q).catch(() => undefined);
  }
  for (const name of ['dead', 'dead2', 'dead3']) await ch.deleteQueue(broker.name(name)).catch(() => undefined);
  for (const name of ['dead', 'dead2', 'dead3', 'events']) await ch.deleteExchange(broker.name(name)).catch(() => undefined);
  await ch.close().catch(() => undefined);
  await broker.close();
  for (const p of pools.values()) await p.end().catch(() => undefined);
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  const database = (await admin.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db as string;
  await admin.query(`REVOKE CREATE ON DATABASE "${database}" FROM ${roleName('owner')}`).catch(() => undefined);
  for (const role of ROLES) {
    // DROP OWNED also takes back every privilege the role holds in this database.
    await admin.query(`DROP OWNED BY ${roleName(role)}`).catch(() => undefined);
    await admin.query(`DROP ROLE IF EXISTS ${roleName(role)}`);
  }
  await admin.end();
});

it('each role holds exactly the documented grants, and nothing is missing for its component', async () => {
  const result = await admin.query<{ grantee: string; table_name: string; privilege_type: string }>(
    `SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants WHERE table_schema = $1 AND grantee = ANY($2::text[])`,
    [schema, ROLES.filter((r) => r !== 'owner').map(roleName)],
  );
  for (const component of ['producer', 'relay', 'consumer', 'sink', 'operator'] as const) {
    const held = result.rows.filter((r) => r.grantee === roleName(component)).map((r) => `${r.table_name}:${r.privilege_type}`);
    const documented = componentGrants(component).flatMap((g) => g.privileges.map((p) => `${g.table}:${p}`));
    expect(held.sort(), component).toEqual(documented.sort());
    expect(await missingGrants(pool(component), schema, component), component).toEqual([]);
    await assertGrants(pool(component), schema, component);
  }
  // The owner's bookkeeping stays its own.
  await expect(pool('operator').query(`SELECT * FROM "${schema}".mailroom_migrations`)).rejects.toThrow('permission denied for table mailroom_migrations');
});

it('grantsScript quotes validated names, merges the components of one role, refuses PUBLIC and unknown components', () => {
  const text = grantsScript('mailroom', { producer: 'app', consumer: 'app', relay: 'Relay-1' });
  expect(text).toContain('-- producer, consumer\nGRANT USAGE ON SCHEMA "mailroom" TO "app";');
  expect(text).toContain('GRANT INSERT ON "mailroom"."outbox" TO "app";');
  expect(text).toContain('GRANT SELECT, INSERT, DELETE ON "mailroom"."inbox" TO "app";');
  expect(text).toContain('GRANT SELECT, INSERT, UPDATE, DELETE ON "mailroom"."outbox" TO "Relay-1";');
  expect(() => grantsScript('mailroom', { relay: 'public' })).toThrow('Invalid role name "public"');
  expect(() => grantsScript('mailroom', { relay: 'pg_monitor' })).toThrow('Invalid role name');
  expect(() => grantsScript('mailroom', { relay: 'x"; DROP TABLE y; --' })).toThrow('Invalid role name');
  expect(() => grantsScript('Bad Schema', { relay: 'r' })).toThrow('Invalid schema name');
  expect(() => grantsScript('mailroom', { archiver: 'r' } as never)).toThrow('Unknown component "archiver"');
  expect(() => grantsScript('mailroom', {})).toThrow('Give a role for at least one component');
});

it('without USAGE on the schema, the check says so before any table', async () => {
  await admin.query(`REVOKE USAGE ON SCHEMA "${schema}" FROM ${roleName('producer')}`);
  try {
    const missing = await missingGrants(pool('producer'), schema, 'producer');
    expect(missing[0]).toEqual({ object: `schema "${schema}"`, privilege: 'USAGE' });
    await expect(enqueueWith(pool('producer'), Task(exchange).create({ mode: 'ok' }))).rejects.toThrow(`permission denied for schema ${schema}`);
  } finally {
    await pool('owner').query(script());
  }
  expect(await missingGrants(pool('producer'), schema, 'producer')).toEqual([]);
  const absent = randomName('nope');
  await expect(assertGrants(pool('producer'), absent, 'producer')).rejects.toThrow(`The producer needs schema "${absent}", which does not exist: run \`mailroom migrate\``);
});

describe('with exactly the documented grants', () => {
  it('producer, relay (ordered and not), consumer (handled, retried, dead-lettered), sink and operator each run their path', async () => {
    const T = Task(exchange);
    const events = { handled: [] as string[], retrying: 0, deadLettered: [] as string[] };
    const sink = createDeadLetterSink({ db: pool('sink'), schema, amqp: amqpUrl, topology: { exchange: broker.name('dead'), queue: broker.name('dead') } });
    const consumer = track(createConsumer({
      name: broker.name('main'),
      db: pool('consumer'),
      amqp: amqpUrl,
      schema,
      handlers: [
        handler(T, async ({ payload, message }) => {
          if (payload.mode === 'fail') throw new NonRetryableError('this task can never work');
          if (payload.mode === 'retry' && message.attempt === 1) throw new Error('try again later');
        }),
      ],
      retry: { maxAttempts: 3, initialDelayMs: 200, multiplier: 2.5 },
      deadLetters: { exchange: broker.name('dead'), queue: broker.name('dead'), sink },
      retention: { cleanupIntervalMs: 0 },
      stopTimeoutMs: 2000,
    }));
    consumer.on('handled', (m) => events.handled.push(m.messageId));
    consumer.on('retrying', () => (events.retrying += 1));
    consumer.on('deadLettered', (d) => events.deadLettered.push(d.messageId));
    await consumer.start();

    // Producer: enqueue in its own transaction.
    const messages = [T.create({ mode: 'ok' }, { key: 'k1' }), T.create({ mode: 'retry' }, { key: 'k2' }), T.create({ mode: 'fail' }), T.create({ mode: 'big', pad: 'x'.repeat(20_000) })];
    await enqueueWith(pool('producer'), messages);
    const [ok, retry, fail, big] = messages.map((m) => m.messageId) as [string, string, string, string];

    // Relay in ordering mode: leases (advisory locks, session timeouts), claim, publish, delete, dead-letter.
    const relayFailures: string[] = [];
    const ordered = createRelay({ database: pool('relay'), amqp: amqpUrl, schema, ordering: true, partitions: 4, leaseHeartbeatMs: 200, pollIntervalMs: 100, maxMessageBytes: 8192 });
    stoppers.push(() => ordered.stop());
    ordered.on('failure', (f) => relayFailures.push(f.error));
    await ordered.start();
    await vi.waitFor(async () => expect(await count(`"${schema}".outbox`)).toBe(0), WAIT);
    expect(await count(`"${schema}".dead_letters WHERE source = 'relay' AND message_id = $1`, [big])).toBe(1);
    expect(await ordered.backlog()).toEqual({ rows: 0, oldestAgeSeconds: 0 });
    await ordered.stop();
    // The archive is off here (its grant is the `archive` feature's: grants-features.test.ts); the operator reads it all the same.
    expect(await listHistory(pool('operator'), { schema })).toEqual([]);

    // Consumer and sink: handled, retried once, dead-lettered and stored.
    await vi.waitFor(() => expect(events.handled.sort()).toEqual([ok, retry].sort()), WAIT);
    expect(events.retrying).toBe(1);
    expect(events.deadLettered).toEqual([fail]);
    await vi.waitFor(async () => expect(await count(`"${schema}".dead_letters WHERE source = $1 AND message_id = $2`, [consumer.queue, fail])).toBe(1), WAIT);
    expect(await count(`"${schema}".inbox WHERE consumer = $1`, [consumer.name])).toBe(2);
    expect(await consumer.cleanup()).toBe(0);

    // The relay without ordering, on a second batch.
    const second = T.create({ mode: 'ok' });
    await enqueueWith(pool('producer'), second);
    const unordered = createRelay({ database: pool('relay'), amqp: amqpUrl, schema, pollIntervalMs: 100 });
    stoppers.push(() => unordered.stop());
    unordered.on('failure', (f) => relayFailures.push(f.error));
    await unordered.start();
    await vi.waitFor(() => expect(events.handled).toContain(second.messageId), WAIT);
    await unordered.stop();
    expect(relayFailures).toEqual([]);

    // Operator: list, show, groups, replay (through the outbox), discard.
    const store = createDeadLetterStore({ db: pool('operator'), schema });
    const listed = await store.list();
    expect(listed.map((d) => d.messageId).sort()).toEqual([fail, big].sort());
    const failed = listed.find((d) => d.messageId === fail);
    const tooBig = listed.find((d) => d.messageId === big);
    expect((await store.show(fail))?.source).toBe(consumer.queue);
    expect((await store.groups()).length).toBe(2);
    const replayed = await store.replay({ ids: [failed?.id ?? ''] });
    expect(replayed.count).toBe(1);
    expect(await count(`"${schema}".outbox WHERE message_id = $1`, [fail])).toBe(1);
    expect(await store.discard({ ids: [tooBig?.id ?? ''] })).toBe(1);
    // The replayed row is not published here: the next tests start from an empty outbox.
    await consumer.stop();
    await admin.query(`DELETE FROM "${schema}".outbox`);

    // The CLI as the operator, and its grants check.
    const listedByCli = await runCli(['dlq', 'list', '--json'], 'operator');
    expect(listedByCli.code, listedByCli.output).toBe(0);
    expect(listedByCli.output).toContain(fail);
    for (const component of ['producer', 'relay', 'consumer', 'sink', 'operator'] as const) {
      const checked = await runCli(['grants', '--check', component], component);
      expect(checked.code, checked.output).toBe(0);
      expect(checked.output).toContain(`has every grant the ${component} needs`);
    }
  });
});

describe('a missing grant is a clear error, not a loop', () => {
  it('producer without INSERT on outbox: enqueue rejects, the transaction writes nothing', async () => {
    await without('producer', 'INSERT', 'outbox', async () => {
      const client = await pool('producer').connect();
      try {
        await client.query('BEGIN');
        await expect(enqueue(client, Task(exchange).create({ mode: 'ok' }), { schema })).rejects.toThrow(/permission denied for table outbox/);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
      const missing = await missingGrants(pool('producer'), schema, 'producer');
      expect(missing).toEqual([{ object: `"${schema}".outbox`, privilege: 'INSERT' }]);
    });
  });

  it('relay without UPDATE on outbox (its claim locks rows): failures name the table, back off, publish nothing; it resumes once granted', async () => {
    const queue = await broker.queueFor(exchange, 'lp.task');
    const received = broker.collect(queue);
    stoppers.push(() => received.stop());
    const message = Task(exchange).create({ mode: 'ok' });
    await enqueueWith(admin, message);
    const failures: string[] = [];
    const relay: Relay = await without('relay', 'UPDATE', 'outbox', async () => {
      const r = createRelay({ database: pool('relay'), amqp: amqpUrl, schema, pollIntervalMs: 100, concurrency: 3 });
      stoppers.push(() => r.stop());
      r.on('failure', (f) => failures.push(f.error));
      const started = await r.start().then(
        () => undefined,
        (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
      );
      if (started !== undefined) {
        // A relay that checks its grants at start refuses at once, naming what is missing.
        expect(started.message).toMatch(/lacks UPDATE on "[^"]+"\.outbox/);
        return r;
      }
      // 3 workers, each backing off from 100 ms (doubling, at most 3.2 s): a handful each in 4 s.
      await expectBoundedFailures(failures, /permission denied for table outbox/, 3 * 6);
      expect(received.messages.length).toBe(0);
      return r;
    });
    if (failures.length > 0) {
      // Granted again: the same relay publishes the row after its backoff.
      await received.waitForCount(1);
      expect(received.ids()).toEqual([message.messageId]);
    }
    await relay.stop();
  });

  it('consumer without INSERT on inbox: deliveries are requeued after a pause, the error names the table; handled once granted', async () => {
    const requeued: string[] = [];
    const handled: string[] = [];
    const consumer = track(createConsumer({
      name: broker.name('noinbox'),
      db: pool('consumer'),
      amqp: amqpUrl,
      schema,
      prefetch: 1,
      handlers: [handler(Task(exchange), async () => undefined)],
      deadLetters: { exchange: broker.name('dead2'), queue: broker.name('dead2') },
      retention: { cleanupIntervalMs: 0 },
      stopTimeoutMs: 2000,
    }));
    consumer.on('requeued', (r) => requeued.push(r.error));
    consumer.on('handled', (m) => handled.push(m.messageId));
    let messageId = '';
    await without('consumer', 'INSERT', 'inbox', async () => {
      const started = await consumer.start().then(
        () => undefined,
        (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
      );
      if (started !== undefined) {
        expect(started.message).toMatch(/lacks INSERT on "[^"]+"\.inbox/);
        return;
      }
      messageId = await publishTask('ok');
      // One delivery in flight, a 1 s pause per requeue: at most a few in 4 s.
      await expectBoundedFailures(requeued, /permission denied for table inbox/, 6);
      expect(handled).toEqual([]);
    });
    if (messageId !== '') {
      await vi.waitFor(() => expect(handled).toEqual([messageId]), WAIT);
      expect(await count(`"${schema}".inbox WHERE consumer = $1`, [consumer.name])).toBe(1);
    }
    await consumer.stop();
  });

  it('consumer without INSERT on inbox_consumers: start() rejects naming the table', async () => {
    await without('consumer', 'INSERT', 'inbox_consumers', async () => {
      const consumer = track(createConsumer({ name: broker.name('noreg'), db: pool('consumer'), amqp: amqpUrl, schema, handlers: [handler(Task(exchange), async () => undefined)] }));
      await expect(consumer.start()).rejects.toThrow(/permission denied for table inbox_consumers|lacks INSERT on "[^"]+"\.inbox_consumers/);
      await consumer.stop();
    });
  });

  it('sink without INSERT on dead_letters: store failures name the table at a bounded rate; stored once granted', async () => {
    const storeFailed: string[] = [];
    const sink = createDeadLetterSink({ db: pool('sink'), schema, amqp: amqpUrl, topology: { exchange: broker.name('dead2'), queue: broker.name('dead2') } });
    sink.on('storeFailed', (f) => storeFailed.push(f.error));
    const consumer = track(createConsumer({
      name: broker.name('nosink'),
      db: pool('consumer'),
      amqp: amqpUrl,
      schema,
      // A binding of its own, so the earlier test's consumer does not take these messages.
      bindings: [{ exchange, routingKey: 'lp.nosink' }],
      handlers: [handler(Task(exchange), async () => Promise.reject(new NonRetryableError('never')))],
      deadLetters: { exchange: broker.name('dead2'), queue: broker.name('dead2'), sink },
      retention: { cleanupIntervalMs: 0 },
      stopTimeoutMs: 2000,
    }));
    let messageId = '';
    await without('sink', 'INSERT', 'dead_letters', async () => {
      const started = await consumer.start().then(
        () => undefined,
        (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
      );
      if (started !== undefined) {
        expect(started.message).toMatch(/lacks INSERT on "[^"]+"\.dead_letters/);
        return;
      }
      messageId = randomUUID();
      const props = { messageId, type: 'lp.task', contentType: 'application/json', persistent: true, headers: envelopeHeaders({ key: null }) };
      publisher.publish(exchange, 'lp.nosink', Buffer.from(JSON.stringify({ mode: 'fail' })), props);
      await publisher.waitForConfirms();
      // One dead letter, a 1 s pause before each redelivery: at most a few in 4 s.
      await expectBoundedFailures(storeFailed, /permission denied for table dead_letters/, 6);
      expect(await count(`"${schema}".dead_letters WHERE message_id = $1`, [messageId])).toBe(0);
    });
    if (messageId !== '') {
      await vi.waitFor(async () => expect(await count(`"${schema}".dead_letters WHERE message_id = $1`, [messageId])).toBe(1), WAIT);
    }
    await consumer.stop();
  });

  it('operator without DELETE or INSERT: discard and replay reject naming the table and change nothing; the CLI exits 1 and says so', async () => {
    const messageId = randomUUID();
    await createDeadLetterStore({ db: admin, schema }).record({ messageId, source: 'op-test', reason: 'max-attempts', error: 'x', type: 'lp.task', exchange, routingKey: 'lp.nowhere', payload: { mode: 'ok' } });
    const store = createDeadLetterStore({ db: pool('operator'), schema });
    const id = (await store.show(messageId))?.id ?? '';
    expect(id).not.toBe('');
    await without('operator', 'DELETE', 'dead_letters', async () => {
      await expect(store.discard({ ids: [id] })).rejects.toThrow(/permission denied for table dead_letters/);
    });
    await admin.query(`DELETE FROM "${schema}".outbox`);
    const before = await count(`"${schema}".dead_letters WHERE id = $1 AND replayed_at IS NULL`, [id]);
    await without('operator', 'INSERT', 'outbox', async () => {
      await expect(store.replay({ ids: [id], force: true })).rejects.toThrow(/permission denied for table outbox/);
    });
    expect(await count(`"${schema}".dead_letters WHERE id = $1 AND replayed_at IS NULL`, [id])).toBe(before);
    expect(await count(`"${schema}".outbox`)).toBe(0);
    await without('operator', 'SELECT', 'dead_letters', async () => {
      const listed = await runCli(['dlq', 'list'], 'operator');
      expect(listed.code).toBe(1);
      expect(listed.output).toContain('permission denied for table dead_letters');
      const checked = await runCli(['grants', '--check', 'operator'], 'operator');
      expect(checked.code).toBe(1);
      expect(checked.output).toContain(`FAIL  role "${roleName('operator')}" lacks SELECT on "${schema}".dead_letters`);
    });
    expect(await count(`"${schema}".dead_letters WHERE id = $1`, [id])).toBe(1);
  });
});

// A long-running component should check its grants in start() (core's assertGrants) and refuse
// there, once, naming what is missing. Found without it (PostgreSQL 15, local RabbitMQ):
// - a relay without DELETE on outbox starts, publishes every batch, fails to delete it and rolls
//   back: 2 rows went to the broker 48 times in 8 s (24 failed batches over 3 workers, backing
//   off to one every 3.2 s per worker, forever; stats.published stays 0);
// - a consumer without INSERT on inbox starts and requeues each delivery after a 1 s pause:
//   160 requeues in 8 s with prefetch 20, the handler never runs;
// - a sink without INSERT on dead_letters starts and gives each dead letter back every second.
describe('start() refuses a role without its grants', () => {
  it('relay without DELETE on outbox (else confirmed batches are republished at every backoff)', async () => {
    await without('relay', 'DELETE', 'outbox', async () => {
      const relay = createRelay({ database: pool('relay'), amqp: amqpUrl, schema, pollIntervalMs: 100 });
      try {
        await expect(relay.start()).rejects.toThrow(/lacks DELETE on "[^"]+"\.outbox/);
      } finally {
        await relay.stop();
      }
    });
  });

  it('consumer without INSERT on inbox (else every delivery is requeued each second)', async () => {
    await without('consumer', 'INSERT', 'inbox', async () => {
      const consumer = track(
        createConsumer({ name: broker.name('refuse'), db: pool('consumer'), amqp: amqpUrl, schema, bindings: [{ exchange, routingKey: 'lp.refuse' }], handlers: [handler(Task(exchange), async () => undefined)], retention: { cleanupIntervalMs: 0 } }),
      );
      try {
        await expect(consumer.start()).rejects.toThrow(/lacks INSERT on "[^"]+"\.inbox/);
      } finally {
        await consumer.stop();
      }
    });
  });

  it('sink without INSERT on dead_letters (else every dead letter is given back each second)', async () => {
    await without('sink', 'INSERT', 'dead_letters', async () => {
      const sink = createDeadLetterSink({ db: pool('sink'), schema, amqp: amqpUrl, topology: { exchange: broker.name('dead3'), queue: broker.name('dead3') } });
      try {
        await expect(sink.start()).rejects.toThrow(/lacks INSERT on "[^"]+"\.dead_letters/);
      } finally {
        await sink.stop();
      }
    });
  });
});

// migrate runs `CREATE SCHEMA IF NOT EXISTS` before anything else, and PostgreSQL checks CREATE on
// the database even when the schema exists: a role that owns a schema a DBA made for it cannot
// migrate it ("permission denied for database"). `it.fails` until migrate() creates the schema
// only when it is missing (core/src/migrations.ts); then change it to `it`.
it('migrate as the owner of a schema a DBA created for it, without CREATE on the database', async () => {
  const owner = `mr_lp_${tag}_schema_owner`;
  const ownSchema = randomName('lpo');
  await admin.query(`CREATE ROLE ${owner} LOGIN PASSWORD '${password}'`);
  await admin.query(`CREATE SCHEMA "${ownSchema}" AUTHORIZATION ${owner}`);
  const url = new URL(databaseUrl);
  url.username = owner;
  url.password = password;
  const ownerPool = new pg.Pool({ connectionString: url.toString(), max: 1 });
  ownerPool.on('error', () => undefined);
  try {
    const result = await migrate(ownerPool, { schema: ownSchema });
    expect(result.applied.length).toBeGreaterThan(0);
  } finally {
    await ownerPool.end();
    await admin.query(`DROP SCHEMA "${ownSchema}" CASCADE`);
    await admin.query(`DROP OWNED BY ${owner}`);
    await admin.query(`DROP ROLE ${owner}`);
  }
});

// One quick run of each component's path, returning every error it met (empty when it all
// worked): what the necessity check below runs without one grant at a time.
let probeRun = 0;
let relayProbeQueue: Promise<string> | undefined;
const describeAll = (error: unknown): string => (error instanceof Error ? `${error.message} ${describeAll(error.cause)}` : error === undefined ? '' : JSON.stringify(error));

/** A logger that keeps the warnings and errors about privileges (the components log their failures). */
function recordingLogger(into: string[]): Logger {
  const log = (message: string, fields?: Record<string, unknown>): void => {
    const line = `${message} ${JSON.stringify(fields ?? {})}`;
    if (/permission denied|lacks/.test(line)) into.push(line);
  };
  return { debug: () => undefined, info: () => undefined, warn: log, error: log };
}

const probes: Record<MailroomComponent, () => Promise<string[]>> = {
  async producer() {
    const errors: string[] = [];
    await enqueueWith(pool('producer'), Task(exchange).create({ mode: 'ok' })).catch((error: unknown) => errors.push(describeAll(error)));
    // Scheduled delivery: enqueue with a delay (its trigger reads the earliest due time), then cancel.
    await scheduleAndCancelWith(pool('producer')).catch((error: unknown) => errors.push(describeAll(error)));
    await admin.query(`DELETE FROM "${schema}".outbox`);
    await admin.query(`DELETE FROM "${schema}".outbox_scheduled`);
    return errors;
  },

  async relay() {
    const errors: string[] = [];
    const run = ++probeRun;
    const T = defineMessage('lp.task', z.object({ mode: z.string(), pad: z.string().optional() }), { exchange, routingKey: 'lp.relay-probe' });
    // A queue, so the broker routes (and confirms) the small row.
    relayProbeQueue ??= broker.queueFor(exchange, 'lp.relay-probe');
    await relayProbeQueue;
    const small = T.create({ mode: 'ok' });
    const big = T.create({ mode: 'big', pad: 'x'.repeat(20_000) });
    await enqueueWith(admin, [small, big]);
    const relay = createRelay({ database: pool('relay'), amqp: amqpUrl, schema, pollIntervalMs: 100, maxMessageBytes: 8192, name: `lp-probe-${run}`, logger: recordingLogger(errors) });
    relay.on('failure', (f) => errors.push(f.error));
    try {
      await relay.start();
      await vi.waitFor(async () => {
        if (errors.length > 0) return;
        expect(await count(`"${schema}".outbox`)).toBe(0);
        expect(await count(`"${schema}".dead_letters WHERE message_id = $1`, [big.messageId])).toBe(1);
      }, WAIT);
      await relay.backlog().catch((error: unknown) => errors.push(describeAll(error)));
    } catch (error) {
      errors.push(describeAll(error));
    } finally {
      await relay.stop();
      await admin.query(`DELETE FROM "${schema}".outbox`);
      await admin.query(`DELETE FROM "${schema}".dead_letters WHERE source = 'relay'`);
    }
    return errors;
  },

  async consumer() {
    const errors: string[] = [];
    const run = ++probeRun;
    const routingKey = `lp.consumer-probe.${run}`;
    let handled = false;
    const consumer = track(
      createConsumer({
        name: broker.name(`probe${run}`),
        db: pool('consumer'),
        amqp: amqpUrl,
        schema,
        bindings: [{ exchange, routingKey }],
        handlers: [handler(Task(exchange), async () => undefined)],
        retry: { maxAttempts: 2, initialDelayMs: 200 },
        deadLetters: { exchange: broker.name('dead2'), queue: broker.name('dead2') },
        retention: { cleanupIntervalMs: 0 },
        stopTimeoutMs: 2000,
        logger: recordingLogger(errors),
      }),
    );
    consumer.on('requeued', (r) => errors.push(r.error));
    consumer.on('handled', () => (handled = true));
    try {
      await consumer.start();
      const props = { messageId: randomUUID(), type: 'lp.task', contentType: 'application/json', persistent: true, headers: envelopeHeaders({ key: null }) };
      publisher.publish(exchange, routingKey, Buffer.from(JSON.stringify({ mode: 'ok' })), props);
      await publisher.waitForConfirms();
      await vi.waitFor(() => expect(handled || errors.length > 0).toBe(true), WAIT);
      await consumer.cleanup();
    } catch (error) {
      errors.push(describeAll(error));
    } finally {
      await consumer.stop();
    }
    return errors;
  },

  async sink() {
    const errors: string[] = [];
    const run = ++probeRun;
    const sink = createDeadLetterSink({ db: pool('sink'), schema, amqp: amqpUrl, topology: { exchange: broker.name('dead3'), queue: broker.name('dead3') }, logger: recordingLogger(errors) });
    const messageId = randomUUID();
    try {
      await sink.start();
      // The sink's write: the same store.record it calls for each dead letter it drains.
      await createDeadLetterStore({ db: pool('sink'), schema }).record({ messageId, source: `probe-${run}`, reason: 'max-attempts', error: 'probe', type: 'lp.task', payload: { mode: 'fail' } });
    } catch (error) {
      errors.push(describeAll(error));
    } finally {
      await sink.stop();
      await admin.query(`DELETE FROM "${schema}".dead_letters WHERE message_id = $1`, [messageId]);
    }
    return errors;
  },

  async operator() {
    const errors: string[] = [];
    const run = ++probeRun;
    const seed = createDeadLetterStore({ db: admin, schema });
    const [replayId, discardId] = [randomUUID(), randomUUID()];
    for (const messageId of [replayId, discardId]) {
      await seed.record({ messageId, source: `probe-${run}`, reason: 'max-attempts', error: 'probe', type: 'lp.task', exchange, routingKey: 'lp.nowhere', payload: { mode: 'ok' } });
    }
    const store = createDeadLetterStore({ db: pool('operator'), schema });
    const step = async (work: () => Promise<unknown>): Promise<void> => {
      await work().catch((error: unknown) => errors.push(describeAll(error)));
    };
    await step(() => store.list({ source: `probe-${run}` }));
    await step(() => store.show(replayId));
    await step(() => store.groups());
    await step(() => store.replay({ ids: [replayId] }));
    await step(() => store.discard({ ids: [discardId] }));
    await step(() => store.actions({ limit: 1 }));
    // `mailroom saga list` and `saga show` (readSaga reads the history even when the instance is not there).
    await step(() => listSagas(pool('operator'), { schema }));
    await step(() => readSaga(pool('operator'), 'probe', `probe-${run}`, { schema }));
    // `mailroom history list` reads the archive.
    await step(() => listHistory(pool('operator'), { schema, limit: 1 }));
    await admin.query(`DELETE FROM "${schema}".outbox`);
    await admin.query(`DELETE FROM "${schema}".dead_letters WHERE source = $1`, [`probe-${run}`]);
    return errors;
  },
};

describe('every documented grant is needed', () => {
  it('with all of them, each probe runs without an error', async () => {
    for (const component of MAILROOM_COMPONENTS) expect(await probes[component](), component).toEqual([]);
  });

  const cases = MAILROOM_COMPONENTS.flatMap((component) =>
    componentGrants(component).flatMap((grant) => grant.privileges.map((privilege) => ({ component, table: grant.table, privilege }))),
  );
  it.each(cases)('$component without $privilege on $table fails, naming the table', async ({ component, table, privilege }) => {
    const errors = await without(component, privilege, table, async () => {
      // The check a component can run at start names exactly the grant taken away.
      expect(await missingGrants(pool(component), schema, component)).toEqual([{ object: `"${schema}".${table}`, privilege }]);
      await expect(assertGrants(pool(component), schema, component)).rejects.toThrow(
        `Role "${roleName(component)}" lacks ${privilege} on "${schema}".${table}, which the ${component} needs`,
      );
      return probes[component]();
    });
    expect(errors.join('\n')).toMatch(new RegExp(`permission denied for table ${table}|lacks ${privilege} on "[^"]+"\\.${table}\\b`));
  });
});
