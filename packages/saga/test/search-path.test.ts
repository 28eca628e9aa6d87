// Every statement of @mailroom/saga names its built-ins through pg_catalog: a schema placed before
// pg_catalog in a connection's search_path, with its own operators and functions for every type
// the statements compare, computes or call, changes nothing (none of them is even called).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import { MetricsRegistry, defineMessage } from '@mailroom/core';
import { toExecutor } from '@mailroom/core/internal';
import type { HandlerBinding } from '@mailroom/inbox';
import { cleanupSagas, defineSaga, listSagas, readSaga, sagaHandlers, sagaMetrics } from '@mailroom/saga';
import { createTestDatabase, testUrls, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let hostile: pg.Pool;
let trap: string;

const Begin = defineMessage('sp.begin', z.object({ id: z.string() }));
const Next = defineMessage('sp.next', z.object({ id: z.string() }));
const saga = defineSaga({
  name: 'sp-saga',
  state: z.object({ n: z.number() }),
  steps: (step) => [
    step(Begin, { starts: true, correlate: (p) => p.id, handle: async ({ state }) => state ?? { n: 0 } }),
    step(Next, {
      correlate: (p) => p.id,
      async handle({ state, complete }) {
        if (state.n >= 1) complete();
        return { n: state.n + 1 };
      },
    }),
  ],
});

beforeAll(async () => {
  db = await createTestDatabase();
  trap = `${db.schema}_trap`;
  const planted = (name: string, args: string, returns: string, value: string): string =>
    `CREATE FUNCTION "${trap}".${name}(${args}) RETURNS ${returns} LANGUAGE plpgsql AS
       $$ BEGIN INSERT INTO "${trap}".calls VALUES ('${name}(${args})'); RETURN ${value}; END $$;`;
  await db.pool.query(`
    CREATE SCHEMA "${trap}";
    CREATE TABLE "${trap}".calls (what text NOT NULL);
    ${planted('eq_text', 'text, text', 'boolean', 'true')}
    CREATE OPERATOR "${trap}".= (LEFTARG = text, RIGHTARG = text, FUNCTION = "${trap}".eq_text);
    ${planted('eq_uuid', 'uuid, uuid', 'boolean', 'true')}
    CREATE OPERATOR "${trap}".= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = "${trap}".eq_uuid);
    ${planted('eq_int8', 'bigint, integer', 'boolean', 'true')}
    CREATE OPERATOR "${trap}".= (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = "${trap}".eq_int8);
    ${planted('plus', 'bigint, integer', 'bigint', '1000')}
    CREATE OPERATOR "${trap}".+ (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = "${trap}".plus);
    ${planted('mul', 'double precision, interval', 'interval', "interval '-100 years'")}
    CREATE OPERATOR "${trap}".* (LEFTARG = double precision, RIGHTARG = interval, FUNCTION = "${trap}".mul);
    ${planted('minus', 'timestamptz, interval', 'timestamptz', "timestamptz '2999-01-01'")}
    CREATE OPERATOR "${trap}".- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = "${trap}".minus);
    ${planted('le', 'timestamptz, timestamptz', 'boolean', 'true')}
    CREATE OPERATOR "${trap}".<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = "${trap}".le);
    ${planted('now', '', 'timestamptz', "timestamptz '2999-01-01'")}
  `);
  hostile = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 4, options: `-c search_path="${trap}",pg_catalog,public` });
  hostile.on('error', () => undefined);
});

afterAll(async () => {
  await hostile?.end();
  await db?.pool.query(`DROP SCHEMA IF EXISTS "${trap}" CASCADE`);
  await db?.close();
});

async function calls(): Promise<string[]> {
  return (await db.pool.query<{ what: string }>(`SELECT what FROM "${trap}".calls ORDER BY 1`)).rows.map((r) => r.what);
}

async function applyStep(binding: HandlerBinding, payload: unknown, messageId = randomUUID()): Promise<void> {
  const client = await hostile.connect();
  try {
    await client.query('BEGIN');
    await binding.handle({
      payload,
      tx: client,
      db: toExecutor(client),
      signal: new AbortController().signal,
      message: {
        messageId,
        type: binding.contract.type,
        version: 1,
        key: null,
        headers: {},
        occurredAt: new Date(),
        attempt: 1,
        redelivered: false,
        exchange: 'mailroom',
        routingKey: binding.contract.type,
        consumer: 'sp',
        queue: 'sp',
      },
    });
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

it('the planted operators and functions are live on the hostile connection', async () => {
  const result = await hostile.query<{ a: boolean; b: boolean }>(`SELECT 'x'::text = 'y'::text AS a, now() > timestamptz '2100-01-01' AS b`);
  expect(result.rows[0]).toEqual({ a: true, b: true });
  await db.pool.query(`TRUNCATE "${trap}".calls`);
});

it('steps, the store, the gauge and the cleanup call none of them, and do what they say', async () => {
  const [begin, next] = sagaHandlers(saga, { schema: db.schema }) as [HandlerBinding, HandlerBinding];
  const [a, b] = [`a-${randomUUID()}`, `b-${randomUUID()}`];
  await applyStep(begin, { id: a });
  await applyStep(begin, { id: b });
  const repeated = randomUUID();
  await applyStep(next, { id: a }, repeated);
  await applyStep(next, { id: a }, repeated); // applied once: found in a's history (not b's)
  await applyStep(next, { id: b });
  await applyStep(next, { id: a });
  await applyStep(next, { id: a }); // a ended: ignored

  const recordA = await readSaga(hostile, 'sp-saga', a, { schema: db.schema });
  expect(recordA).toMatchObject({ status: 'completed', version: 3, state: { n: 2 } });
  expect(recordA?.history.map((h) => [h.outcome, h.from.version, h.to.version])).toEqual([
    ['applied', 0, 1],
    ['applied', 1, 2],
    ['applied', 2, 3],
    ['ignored', 3, 3],
  ]);
  expect(recordA?.createdAt.getFullYear()).toBeLessThan(2999);
  expect(await readSaga(hostile, 'sp-saga', b, { schema: db.schema })).toMatchObject({ status: 'running', version: 2, state: { n: 1 } });
  expect((await listSagas(hostile, { schema: db.schema, name: 'sp-saga' })).map((s) => s.id).sort()).toEqual([a, b].sort());
  expect(await listSagas(hostile, { schema: db.schema, stuckForMs: 3_600_000 })).toEqual([]);
  const registry = new MetricsRegistry();
  sagaMetrics(registry, { db: hostile, schema: db.schema });
  const text = await registry.render();
  expect(text).toContain('mailroom_saga_instances{saga="sp-saga",status="completed"} 1');
  expect(text).toContain('mailroom_saga_instances{saga="sp-saga",status="running"} 1');
  // a ended just now: a day's retention keeps it.
  expect(await cleanupSagas(hostile, { schema: db.schema, olderThanMs: 86_400_000 })).toBe(0);
  expect(await calls()).toEqual([]);
});
