// The operator overview of the outbox (issue 13): backlog, the oldest row's age, rows waiting for a
// retry and the relays with their partition leases, in bounded work however large the outbox, and
// untouched by a hostile search_path.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import pg from 'pg';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue, readOutboxOverview, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, randomName, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let broker: TestBroker;
const cleanups: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await broker?.close();
  await db?.close();
});

const WAIT = { timeout: 20_000, interval: 100 };

async function insertRows(schema: string, n: number, extra = ''): Promise<void> {
  await db.pool.query(
    `INSERT INTO "${schema}".outbox (message_id, type, exchange, routing_key, payload${extra === '' ? '' : ', attempts, available_at'})
     SELECT gen_random_uuid(), 'bulk', 'nowhere', 'r', '{}'::jsonb${extra === '' ? '' : `, ${extra}`} FROM generate_series(1, ${n})`,
  );
}

/** Rows of the outbox a statement read: actual rows plus those its filters removed, over every scan node on `outbox`. */
async function rowsRead(client: pg.PoolClient | pg.Pool, sql: string, params: unknown[] = []): Promise<number> {
  const result = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
  const plan = (result.rows[0] as { 'QUERY PLAN': Array<{ Plan: PlanNode }> })['QUERY PLAN'][0]?.Plan as PlanNode;
  let read = 0;
  const walk = (node: PlanNode): void => {
    if (node['Relation Name'] === 'outbox') read += ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(plan);
  return read;
}
interface PlanNode {
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
}

describe('readOutboxOverview', () => {
  it('an empty outbox: nothing waiting, no relay', async () => {
    const empty = await createTestDatabase();
    cleanups.push(() => empty.close());
    expect(await readOutboxOverview(empty.pool, { schema: empty.schema })).toEqual({
      backlog: { rows: 0, exact: true, oldestAgeSeconds: 0 },
      retrying: { rows: 0, exact: true },
      scheduled: { rows: 0, nextDeliverAt: null, overdueSeconds: 0 },
      relays: [],
      partitionsLeased: 0,
    });
  });

  it('counts the backlog, the age of the oldest row and the rows waiting for a retry', async () => {
    const s = await createTestDatabase();
    cleanups.push(() => s.close());
    await insertRows(s.schema, 3);
    await insertRows(s.schema, 2, `2, now() + interval '1 hour'`);
    await db.pool.query(`UPDATE "${s.schema}".outbox SET created_at = now() - interval '90 seconds' WHERE id = (SELECT min(id) FROM "${s.schema}".outbox)`);
    const o = await readOutboxOverview(s.pool, { schema: s.schema });
    expect(o.backlog).toMatchObject({ rows: 5, exact: true });
    expect(o.backlog.oldestAgeSeconds).toBeGreaterThanOrEqual(89);
    expect(o.backlog.oldestAgeSeconds).toBeLessThan(200);
    expect(o.retrying).toEqual({ rows: 2, exact: true });
    expect(o.scheduled).toEqual({ rows: 0, nextDeliverAt: null, overdueSeconds: 0 });
    // Scheduled messages wait in their own table until they fall due: not in the backlog.
    const Later = defineMessage('overview.later', z.object({ n: z.number() }));
    const deliverAt = new Date(Date.now() + 3_600_000);
    const inTransaction = async (pool: pg.Pool, fn: (tx: pg.PoolClient) => Promise<void>): Promise<void> => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await fn(client);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    await inTransaction(s.pool, (tx) => enqueue(tx, [Later.create({ n: 1 }), Later.create({ n: 2 })], { schema: s.schema, deliverAt }));
    const after = await readOutboxOverview(s.pool, { schema: s.schema });
    expect(after.scheduled).toEqual({ rows: 2, nextDeliverAt: deliverAt, overdueSeconds: 0 });
    expect(after.backlog.rows).toBe(5);
  });

  it('a schema without the scheduled table yet (migration 11 pending) reads scheduled as null', async () => {
    const s = await createTestDatabase();
    cleanups.push(() => s.close());
    await db.pool.query(`DROP TABLE "${s.schema}".outbox_scheduled CASCADE`);
    expect((await readOutboxOverview(s.pool, { schema: s.schema })).scheduled).toBeNull();
  });

  it('refuses a schema name that is no identifier', async () => {
    await expect(readOutboxOverview(db.pool, { schema: 'x"; DROP TABLE y; --' })).rejects.toThrow(/schema|identifier/i);
    await expect(readOutboxOverview(db.pool, { schema: 'a\u0000b' })).rejects.toThrow();
  });

  it('reads at most about 10,000 rows of a 60,000-row outbox (EXPLAIN ANALYZE of each statement), and says the count is an estimate', async () => {
    const big = await createTestDatabase();
    cleanups.push(() => big.close());
    await insertRows(big.schema, 60_000);
    await insertRows(big.schema, 50, `1, now() + interval '1 hour'`);
    // What autovacuum does on its own soon after a bulk insert; the estimate and the plans need it.
    await big.pool.query(`ANALYZE "${big.schema}".outbox`);
    const o = await readOutboxOverview(big.pool, { schema: big.schema });
    expect(o.backlog.exact).toBe(false);
    expect(o.backlog.rows).toBeGreaterThan(50_000);
    expect(o.retrying).toEqual({ rows: 50, exact: true });

    // The statements readOutboxOverview sends, under EXPLAIN ANALYZE: the backlog (capped count,
    // estimate, oldest row by the primary key) and the retries (through their partial index).
    const { backlogSql } = await import('../src/backlog-probe.js');
    const backlogRead = await rowsRead(big.pool, backlogSql(big.schema), [`"${big.schema}".outbox`]);
    expect(backlogRead).toBeLessThanOrEqual(10_002);
    const { retryingSql } = await import('../src/outbox-overview.js');
    const retryRead = await rowsRead(big.pool, retryingSql(big.schema));
    expect(retryRead).toBeLessThanOrEqual(100);
  });

  it('lists relays in ordering mode with the partitions each leases, and an idle relay without ordering', async () => {
    const { databaseUrl } = testUrls();
    const s = await createTestDatabase();
    cleanups.push(() => s.close());
    const names = [randomName('ordered'), randomName('ordered'), randomName('plain')];
    const relays: Relay[] = [
      createRelay({ database: databaseUrl, amqp: testUrls().amqpUrl, schema: s.schema, ordering: true, partitions: 8, leaseHeartbeatMs: 100, name: names[0] }),
      createRelay({ database: databaseUrl, amqp: testUrls().amqpUrl, schema: s.schema, ordering: true, partitions: 8, leaseHeartbeatMs: 100, name: names[1] }),
      createRelay({ database: databaseUrl, amqp: testUrls().amqpUrl, schema: s.schema, pollIntervalMs: 200, name: names[2] }),
    ];
    for (const r of relays) cleanups.push(() => r.stop());
    for (const r of relays) await r.start();
    // Two relays in ordering mode share 8 partitions, 4 each, once they have rebalanced.
    await vi.waitFor(async () => {
      const o = await readOutboxOverview(s.pool, { schema: s.schema });
      const ordered = o.relays.filter((r) => r.ordering);
      expect(ordered.map((r) => r.name).sort()).toEqual([names[0], names[1]].sort());
      expect(ordered.map((r) => r.partitions.length)).toEqual([4, 4]);
      expect(o.partitionsLeased).toBe(8);
      expect(new Set(ordered.flatMap((r) => r.partitions))).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7]));
      // The relay without ordering shows while it waits for work (it holds the "asleep" lock).
      expect(o.relays.find((r) => r.name === names[2])).toMatchObject({ ordering: false, idle: true, partitions: [] });
    }, WAIT);
    // A relay of another schema is not listed.
    const other = await readOutboxOverview(db.pool, { schema: db.schema });
    expect(other.relays.filter((r) => names.includes(r.name))).toEqual([]);
    await relays[0]?.stop();
    await vi.waitFor(async () => {
      const o = await readOutboxOverview(s.pool, { schema: s.schema });
      expect(o.relays.filter((r) => r.ordering).map((r) => [r.name, r.partitions.length])).toEqual([[names[1], 8]]);
    }, WAIT);
  });

  it('a hostile search_path changes nothing: planted functions and operators are never called', async () => {
    const evil = randomName('evil');
    await db.pool.query(`CREATE SCHEMA "${evil}"; CREATE SEQUENCE "${evil}".calls`);
    cleanups.push(() => db.pool.query(`DROP SCHEMA "${evil}" CASCADE`));
    const planted = [
      ['now() RETURNS timestamptz', 'pg_catalog.now()'],
      ['hashtext(a text) RETURNS integer', 'pg_catalog.hashtext(a)'],
      ['int_gt(a integer, b integer) RETURNS boolean', 'a OPERATOR(pg_catalog.>) b'],
      ['ts_gt(a timestamptz, b timestamptz) RETURNS boolean', 'a OPERATOR(pg_catalog.>) b'],
    ] as const;
    for (const [signature, body] of planted) {
      await db.pool.query(`CREATE FUNCTION "${evil}".${signature} LANGUAGE plpgsql VOLATILE AS $$
        BEGIN PERFORM pg_catalog.nextval('"${evil}".calls'); RETURN ${body}; END $$`);
    }
    await db.pool.query(`CREATE OPERATOR "${evil}".> (LEFTARG = integer, RIGHTARG = integer, FUNCTION = "${evil}".int_gt)`);
    await db.pool.query(`CREATE OPERATOR "${evil}".> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = "${evil}".ts_gt)`);
    await insertRows(db.schema, 2, `1, now() + interval '1 hour'`);
    const hostile = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 1, options: `-c search_path="${evil}",pg_catalog` });
    cleanups.push(() => hostile.end());
    const o = await readOutboxOverview(hostile, { schema: db.schema });
    expect(o.retrying.rows).toBe(2);
    const calls = await db.pool.query(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM "${evil}".calls`);
    expect(Number((calls.rows[0] as { n: string }).n)).toBe(0);
  });
});
