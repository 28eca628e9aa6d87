// A transaction enqueuing tens of thousands of distinct keys must not exhaust PostgreSQL's shared
// lock table (issue 9, defect 15): the per-key lock takes one of a bounded number of slots.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount } from './relay-process.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase({ max: 4 });
});
afterAll(async () => {
  await db?.close();
});

const Event = defineMessage('bulk.event', z.object({ n: z.number() }));

it('20,000 distinct keys in one transaction, and a concurrent keyed producer: both commit, the locks held stay bounded', async () => {
  const bulk = await db.pool.connect();
  const other = await db.pool.connect();
  try {
    await bulk.query('BEGIN');
    const events = Array.from({ length: 20_000 }, (_, n) => Event.create({ n }, { key: `customer-${n}` }));
    await enqueue(bulk, events, { schema: db.schema });
    const held = await bulk.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`);
    expect((held.rows[0] as { n: number }).n).toBeLessThanOrEqual(1024);

    // Another producer while the bulk transaction is open: it may wait for a shared slot, but it
    // must not fail for want of shared memory.
    const concurrent = (async () => {
      await other.query('BEGIN');
      await enqueue(other, [Event.create({ n: -1 }, { key: 'someone-else' }), Event.create({ n: -2 }, { key: 'customer-7' })], { schema: db.schema });
      await other.query('COMMIT');
    })();
    await new Promise((r) => setTimeout(r, 200));
    await bulk.query('COMMIT');
    await concurrent;
  } finally {
    await bulk.query('ROLLBACK').catch(() => undefined);
    await other.query('ROLLBACK').catch(() => undefined);
    bulk.release();
    other.release();
  }
  expect(await outboxCount(db.pool, db.schema)).toBe(20_002);
  // customer-7's later event got the later id: the slot lock made the producer wait for the bulk commit.
  const order = await db.pool.query(`SELECT payload->>'n' AS n FROM "${db.schema}".outbox WHERE key = 'customer-7' ORDER BY id`);
  expect(order.rows.map((r) => Number((r as { n: string }).n))).toEqual([7, -2]);
}, 120_000);
