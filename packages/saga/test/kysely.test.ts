// A saga run by a consumer on a kysely instance: the steps get the kysely Transaction as `tx`,
// their own queries in it commit with the step, and send / schedule / cancel go through the
// outbox in that same transaction.
import { randomUUID } from 'node:crypto';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { defineSaga, readSaga, sagaHandlers } from '@mailroom/saga';
import { WAIT, consumerFor, publish, setupEnv, type Env } from './support.js';

type DB = Record<string, never>;
let env: Env;
let kysely: Kysely<DB>;

beforeAll(async () => {
  env = await setupEnv();
  kysely = new Kysely<DB>({ dialect: new PostgresDialect({ pool: env.db.pool }) });
  await env.db.pool.query(`CREATE TABLE "${env.db.schema}".notes (instance text NOT NULL, note text NOT NULL)`);
});

afterAll(async () => {
  await env?.cleanup();
});

it('steps run in the kysely transaction: their writes, the instance, the sent and the scheduled messages commit together', async () => {
  const Placed = defineMessage('k.placed', z.object({ id: z.string() }), { exchange: env.exchange });
  const Remind = defineMessage('k.remind', z.object({ id: z.string() }), { exchange: env.exchange });
  const Cancelled = defineMessage('k.cancelled', z.object({ id: z.string() }), { exchange: env.exchange });
  const State = z.object({ reminders: z.array(z.string()) });
  const saga = defineSaga<typeof State, Transaction<DB>>({
    name: 'k-saga',
    state: State,
    steps: (step) => [
      step(Placed, {
        starts: true,
        correlate: (p) => p.id,
        async handle({ tx, instance, send, schedule, cancel }) {
          await sql`INSERT INTO ${sql.table(`${env.db.schema}.notes`)} (instance, note) VALUES (${instance.id}, 'placed')`.execute(tx);
          await send(Cancelled.create({ id: instance.id }), { delay: 3_600_000 });
          const first = await schedule(Remind.create({ id: instance.id }), { delay: 3_600_000 });
          const second = await schedule(Remind.create({ id: instance.id }), { deliverAt: new Date(Date.now() + 7_200_000) });
          expect(await cancel(first)).toBe(true);
          return { reminders: [second] };
        },
      }),
      step(Remind, { correlate: (p) => p.id, handle: async ({ state }) => state }),
    ],
  });
  const { consumer } = consumerFor(env, { db: kysely, handlers: sagaHandlers(saga, { schema: env.db.schema }) });
  await consumer.start();
  const id = `k-${randomUUID()}`;
  await publish(env, Placed, { id });
  const record = await vi.waitFor(async () => {
    const r = await readSaga(kysely, 'k-saga', id, { schema: env.db.schema });
    expect(r).toBeDefined();
    return r;
  }, WAIT);
  expect(record).toMatchObject({ status: 'running', version: 1 });
  const reminder = (record?.state as { reminders: string[] }).reminders[0];
  const notes = await env.db.pool.query(`SELECT note FROM "${env.db.schema}".notes WHERE instance = $1`, [id]);
  expect(notes.rows).toEqual([{ note: 'placed' }]);
  const scheduled = await env.db.pool.query<{ message_id: string; type: string }>(
    `SELECT message_id::text, type FROM "${env.db.schema}".outbox_scheduled WHERE payload->>'id' = $1 ORDER BY type`,
    [id],
  );
  expect(scheduled.rows.map((r) => r.type)).toEqual(['k.cancelled', 'k.remind']);
  expect(scheduled.rows[1]?.message_id).toBe(reminder);
});
