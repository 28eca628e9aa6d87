// A hostile search_path changes nothing (issue 9, defect 7): functions and operators planted in a
// schema that comes first in the connection's search_path are never called by enqueue or the relay.
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import pg from 'pg';
import { z } from 'zod';
import { DEAD_LETTER_REASON, defineMessage, type OutgoingMessage } from '@mailroom/core';
import { createRelay, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, randomName, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount } from './relay-process.js';
import { commitEvents } from './commit-events.js';

let db: TestDatabase;
let broker: TestBroker;
let hostile: pg.Pool;
const evil = randomName('evil');
const relays: Relay[] = [];

// Each planted object counts its calls, then does what the real one does (so nothing else breaks).
const PLANTED = [
  ['mod(a bigint, b integer) RETURNS bigint', 'pg_catalog.mod(a, b::bigint)'],
  ['mod(a bigint, b bigint) RETURNS bigint', 'pg_catalog.mod(a, b)'],
  ['hashtext(a text) RETURNS integer', 'pg_catalog.hashtext(a)'],
  ['now() RETURNS timestamptz', 'pg_catalog.now()'],
  ['pg_notify(a text, b text) RETURNS void', 'pg_catalog.pg_notify(a, b)'],
  ['pg_advisory_xact_lock(a integer, b integer) RETURNS void', 'pg_catalog.pg_advisory_xact_lock(a, b)'],
  ['to_regclass(a text) RETURNS regclass', 'pg_catalog.to_regclass(a)'],
  ['set_config(a text, b text, c boolean) RETURNS text', 'pg_catalog.set_config(a, b, c)'],
  ['int_times_interval(a integer, b interval) RETURNS interval', 'a::float8 OPERATOR(pg_catalog.*) b'],
  ['float_times_interval(a float8, b interval) RETURNS interval', 'a OPERATOR(pg_catalog.*) b'],
  ['ts_le(a timestamptz, b timestamptz) RETURNS boolean', 'a OPERATOR(pg_catalog.<=) b'],
  ['ts_plus(a timestamptz, b interval) RETURNS timestamptz', 'a OPERATOR(pg_catalog.+) b'],
  ['big_plus(a bigint, b bigint) RETURNS bigint', 'a OPERATOR(pg_catalog.+) b'],
] as const;
const OPERATORS = [
  ['*', 'integer', 'interval', 'int_times_interval'],
  ['*', 'float8', 'interval', 'float_times_interval'],
  ['<=', 'timestamptz', 'timestamptz', 'ts_le'],
  ['+', 'timestamptz', 'interval', 'ts_plus'],
  ['+', 'bigint', 'bigint', 'big_plus'],
] as const;

async function plantedCalls(): Promise<number> {
  const result = await db.pool.query(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM "${evil}".calls`);
  return Number((result.rows[0] as { n: string }).n);
}

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
  await db.pool.query(`CREATE SCHEMA "${evil}"; CREATE SEQUENCE "${evil}".calls`);
  for (const [signature, body] of PLANTED) {
    const ret = signature.endsWith('void') ? `PERFORM ${body}; RETURN;` : `RETURN ${body};`;
    await db.pool.query(`CREATE FUNCTION "${evil}".${signature} LANGUAGE plpgsql VOLATILE AS $$
      BEGIN PERFORM pg_catalog.nextval('"${evil}".calls'); ${ret} END $$`);
  }
  for (const [op, left, right, fn] of OPERATORS) {
    await db.pool.query(`CREATE OPERATOR "${evil}".${op} (LEFTARG = ${left}, RIGHTARG = ${right}, FUNCTION = "${evil}".${fn})`);
  }
  await db.pool.query(`GRANT USAGE ON SCHEMA "${evil}" TO PUBLIC`);
  // The application's pool: the planted schema first, even before pg_catalog.
  hostile = new pg.Pool({ connectionString: db.databaseUrl, max: 8, options: `-c search_path="${evil}",pg_catalog,public` });
  hostile.on('error', () => undefined);
});
afterAll(async () => {
  for (const r of relays) await r.stop();
  await hostile?.end();
  await db?.pool.query(`DROP SCHEMA IF EXISTS "${evil}" CASCADE`);
  await broker?.close();
  await db?.close();
});

async function add(messages: OutgoingMessage[]): Promise<void> {
  await commitEvents(hostile, db.schema, messages);
}

it('enqueue and the relay (ordered and not, with retries and dead letters) never call an object planted earlier in the search_path', async () => {
  // The plant works: an unqualified call on that pool reaches it.
  await hostile.query(`SELECT mod(7::bigint, 3), 2 * interval '1 second', now()`);
  expect(await plantedCalls()).toBeGreaterThanOrEqual(3);
  await db.pool.query(`SELECT pg_catalog.setval('"${evil}".calls', 1, false)`);
  expect(await plantedCalls()).toBe(0);

  const exchange = broker.name('searchpath');
  const queue = await broker.queueFor(exchange, 'routed.#');
  const received = broker.collect(queue);
  const Routed = defineMessage('sp.event', z.object({ n: z.number() }), { exchange, routingKey: 'routed.x' });
  const Unroutable = defineMessage('sp.lost', z.object({ n: z.number() }), { exchange, routingKey: 'nowhere' });

  for (const ordering of [true, false]) {
    const events = Array.from({ length: 20 }, (_, n) => Routed.create({ n }, { key: `k-${n % 3}` }));
    const lost = Unroutable.create({ n: -1 }, { key: 'lost-key' });
    await add([...events, lost]);
    const relay = createRelay({
      database: hostile,
      amqp: testUrls().amqpUrl,
      schema: db.schema,
      ordering,
      partitions: 4,
      leaseHeartbeatMs: 100,
      pollIntervalMs: 100,
      retryInitialDelayMs: 50,
      retryMaxDelayMs: 100,
      maxUnroutableAttempts: 3,
    });
    relays.push(relay);
    await relay.start();
    await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 30_000, interval: 50 });
    const dead = await db.pool.query(`SELECT reason FROM "${db.schema}".dead_letters WHERE message_id = $1`, [lost.messageId]);
    expect(dead.rows).toEqual([{ reason: DEAD_LETTER_REASON.unroutable }]);
    expect((await relay.backlog()).rows).toBe(0);
    await relay.stop();
  }
  await vi.waitFor(() => expect(new Set(received.ids()).size).toBe(40), { timeout: 30_000, interval: 50 });
  expect(await plantedCalls()).toBe(0);
  await received.stop();
});
