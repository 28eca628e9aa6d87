// Scheduled delivery under a hostile search_path: functions, operators and an aggregate planted in
// a schema that comes first in the connection's search_path are never called by a scheduled
// enqueue (and its trigger), cancelScheduled, scheduledCount or the relay's mover.
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import pg from 'pg';
import { z } from 'zod';
import { defineMessage, type OutgoingMessage } from '@mailroom/core';
import { cancelScheduled, createRelay, enqueue, scheduledCount, type EnqueueOptions, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, randomName, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let broker: TestBroker;
let hostile: pg.Pool;
let relay: Relay | undefined;
const evil = randomName('evil');

// Each planted object counts its calls, then does what the real one does.
const PLANTED = [
  ['now() RETURNS timestamptz', 'pg_catalog.now()'],
  ['clock_timestamp() RETURNS timestamptz', 'pg_catalog.clock_timestamp()'],
  ['statement_timestamp() RETURNS timestamptz', 'pg_catalog.statement_timestamp()'],
  ['pg_notify(a text, b text) RETURNS void', 'pg_catalog.pg_notify(a, b)'],
  ['concat(a text, b name) RETURNS text', 'pg_catalog.concat(a, b)'],
  ['left(a text, b integer) RETURNS text', 'pg_catalog.left(a, b)'],
  ['string_to_array(a text, b text) RETURNS text[]', 'pg_catalog.string_to_array(a, b)'],
  ['pg_try_advisory_xact_lock(a integer, b integer) RETURNS boolean', 'pg_catalog.pg_try_advisory_xact_lock(a, b)'],
  ['pg_advisory_lock(a integer, b integer) RETURNS void', 'pg_catalog.pg_advisory_lock(a, b)'],
  ['set_config(a text, b text, c boolean) RETURNS text', 'pg_catalog.set_config(a, b, c)'],
  ['float_times_interval(a float8, b interval) RETURNS interval', 'a OPERATOR(pg_catalog.*) b'],
  ['ts_le(a timestamptz, b timestamptz) RETURNS boolean', 'a OPERATOR(pg_catalog.<=) b'],
  ['ts_gt(a timestamptz, b timestamptz) RETURNS boolean', 'a OPERATOR(pg_catalog.>) b'],
  ['ts_plus(a timestamptz, b interval) RETURNS timestamptz', 'a OPERATOR(pg_catalog.+) b'],
  ['ts_minus(a timestamptz, b timestamptz) RETURNS interval', 'a OPERATOR(pg_catalog.-) b'],
  ['uuid_eq(a uuid, b uuid) RETURNS boolean', 'a OPERATOR(pg_catalog.=) b'],
  ['min_step(a timestamptz, b timestamptz) RETURNS timestamptz', 'CASE WHEN a IS NULL OR b OPERATOR(pg_catalog.<) a THEN b ELSE a END'],
] as const;
const OPERATORS = [
  ['*', 'float8', 'interval', 'float_times_interval'],
  ['<=', 'timestamptz', 'timestamptz', 'ts_le'],
  ['>', 'timestamptz', 'timestamptz', 'ts_gt'],
  ['+', 'timestamptz', 'interval', 'ts_plus'],
  ['-', 'timestamptz', 'timestamptz', 'ts_minus'],
  ['=', 'uuid', 'uuid', 'uuid_eq'],
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
  await db.pool.query(`CREATE AGGREGATE "${evil}".min(timestamptz) (SFUNC = "${evil}".min_step, STYPE = timestamptz)`);
  await db.pool.query(`GRANT USAGE ON SCHEMA "${evil}" TO PUBLIC`);
  hostile = new pg.Pool({ connectionString: db.databaseUrl, max: 8, options: `-c search_path="${evil}",pg_catalog,public` });
  hostile.on('error', () => undefined);
});
afterAll(async () => {
  await relay?.stop();
  await hostile?.end();
  await db?.pool.query(`DROP SCHEMA IF EXISTS "${evil}" CASCADE`);
  await broker?.close();
  await db?.close();
});

async function onHostile<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await hostile.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } finally {
    client.release();
  }
}

const schedule = (messages: OutgoingMessage | OutgoingMessage[], options: Omit<EnqueueOptions, 'schema'>): Promise<void> =>
  onHostile((c) => enqueue(c, messages, { ...options, schema: db.schema }));

it('a scheduled enqueue, its trigger, cancelScheduled, scheduledCount and the mover never call a planted object', async () => {
  // The plant works: unqualified calls on that pool reach it.
  await hostile.query(`SELECT now() <= clock_timestamp(), min(x) FROM (VALUES (now())) AS v(x)`);
  expect(await plantedCalls()).toBeGreaterThanOrEqual(3);
  await db.pool.query(`SELECT pg_catalog.setval('"${evil}".calls', 1, false)`);
  expect(await plantedCalls()).toBe(0);

  const exchange = broker.name('sched-sp');
  const queue = await broker.queueFor(exchange, '#');
  const received = broker.collect(queue);
  const Tick = defineMessage('sched.sp', z.object({ n: z.number() }), { exchange });
  const keyed = Array.from({ length: 6 }, (_, n) => Tick.create({ n }, { key: `k${n % 2}` }));
  const dropped = Tick.create({ n: 99 });
  // Out of order, so the trigger notifies; one through `delay`; one cancelled.
  await schedule(keyed.slice(0, 3), { deliverAt: new Date(Date.now() + 600) });
  await schedule(keyed.slice(3), { delay: 300 });
  await schedule(dropped, { delay: 400 });
  expect(await onHostile((c) => cancelScheduled(c, dropped.messageId, { schema: db.schema }))).toBe(true);
  expect((await scheduledCount(hostile, { schema: db.schema })).rows).toBe(6);

  relay = createRelay({ database: hostile, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 100 });
  await relay.start();
  await vi.waitFor(() => expect(new Set(received.ids()).size).toBe(6), { timeout: 10_000, interval: 50 });
  expect((await relay.scheduled()).rows).toBe(0);
  await relay.stop();
  relay = undefined;
  expect(received.ids()).not.toContain(dropped.messageId);
  expect(await plantedCalls()).toBe(0);
  await received.stop();
});
