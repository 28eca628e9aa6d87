// Group commit: several deliveries in one transaction, each its own unit. The consumer gets a pool
// of ONE connection and the first delivery's handler waits on a gate until every other message
// sits in the consumer: they all gather in the next transaction, deterministically. Each handler
// records the transaction it ran in (pg_current_xact_id), so the tests can see who shared one.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MetricsRegistry } from '@mailroom/core';
import type { HandlerContext } from '@mailroom/inbox';
import { testUrls } from '../../../test/helpers.js';
import { WAIT, consumerFor, effects, publish, queueDepth, setupEnv, type Env } from './support.js';

let env: Env;
let single: pg.Pool;
beforeAll(async () => {
  env = await setupEnv();
  single = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 1 });
  single.on('error', () => undefined);
});
afterAll(async () => {
  await env.cleanup();
  await single.end();
});

type Ctx = HandlerContext<{ orderId: string; total: number }>;

interface Run {
  /** Transaction id of each handler call, by order id ("o-3#1" for its first call). */
  xids: Map<string, string>;
  /** Handler calls by order id. */
  calls: Map<string, number>;
}

/**
 * Starts a consumer whose handler records its transaction id and an effect (note = order id),
 * then lets `special` have its say; publishes `o-0` (held on a gate), then `orders`, waits until all
 * of them were delivered to the consumer, opens the gate and waits until `expected` effects.
 */
async function gathered(
  label: string,
  orders: Array<{ orderId: string; messageId?: string; key?: string }>,
  special: (ctx: Ctx, call: number) => Promise<void>,
  overrides: Record<string, unknown> = {},
): Promise<{ run: Run; consumer: ReturnType<typeof consumerFor> }> {
  const run: Run = { xids: new Map(), calls: new Map() };
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const consumer = consumerFor(
    env,
    async (ctx) => {
      const { payload, db, message } = ctx;
      const call = (run.calls.get(payload.orderId) ?? 0) + 1;
      run.calls.set(payload.orderId, call);
      const { rows } = await db.query<{ xid: string }>('SELECT pg_catalog.pg_current_xact_id()::text AS xid');
      run.xids.set(`${payload.orderId}#${call}`, rows[0]?.xid ?? '?');
      if (payload.orderId === 'o-0') await gate;
      await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, payload.orderId]);
      // After its effect: what the special handler does must also take care of that.
      await special(ctx, call);
    },
    { name: env.broker.name(label), db: single, prefetch: 50, ...overrides },
  );
  await consumer.start();
  await publish(env, { orderId: 'o-0', total: 0 }, { key: 'k-0' });
  await vi.waitFor(() => expect(run.calls.get('o-0')).toBe(1), WAIT);
  for (const o of orders) await publish(env, { orderId: o.orderId, total: 1 }, { ...(o.messageId ? { messageId: o.messageId } : {}), key: o.key ?? o.orderId });
  // Everything is in the consumer's hands (delivered, unacked): the next transaction takes it all.
  await vi.waitFor(async () => expect(await queueDepth(env, consumer.queue)).toBe(0), WAIT);
  await sleep(100);
  open();
  return { run, consumer };
}

async function effectsByNote(): Promise<Map<string, number>> {
  const { rows } = await env.db.pool.query<{ note: string; n: number }>(`SELECT note, count(*)::int AS n FROM "${env.db.schema}".effects GROUP BY note`);
  return new Map(rows.map((r) => [r.note, r.n]));
}

async function clearEffects(): Promise<void> {
  await env.db.pool.query(`TRUNCATE "${env.db.schema}".effects`);
}

const orders = (n: number, prefix = 'o'): Array<{ orderId: string }> => Array.from({ length: n }, (_, i) => ({ orderId: `${prefix}-${i + 1}` }));

describe('group commit', () => {
  it('a handler that throws in a batch: the others commit once, only it is retried', async () => {
    await clearEffects();
    const { run, consumer } = await gathered('gc-throw', orders(6), async ({ payload }, call) => {
      if (payload.orderId === 'o-3' && call === 1) throw new Error('o-3 fails once');
    });
    await vi.waitFor(async () => expect((await effectsByNote()).get('o-3')).toBe(1), WAIT);
    const byNote = await effectsByNote();
    for (let i = 0; i <= 6; i++) expect(byNote.get(`o-${i}`), `o-${i}`).toBe(1);
    // The failing one shared its transaction with the others, and none of them ran twice.
    const shared = run.xids.get('o-3#1');
    const neighbours = [1, 2, 4, 5, 6].filter((i) => run.xids.get(`o-${i}#1`) === shared);
    expect(neighbours.length).toBeGreaterThanOrEqual(4);
    for (const i of [1, 2, 4, 5, 6]) expect(run.calls.get(`o-${i}`), `calls of o-${i}`).toBe(1);
    expect(run.calls.get('o-3')).toBe(2);
    await vi.waitFor(() => expect(consumer.stats).toMatchObject({ handled: 7, failures: 1, retries: 1, duplicates: 0 }), WAIT);
    await consumer.stop();
  });

  it('a handler that poisons the transaction (a failed statement it swallows) does not undo its neighbours', async () => {
    await clearEffects();
    const { run, consumer } = await gathered('gc-poison', orders(6), async ({ payload, db, message }, call) => {
      if (payload.orderId === 'o-3' && call === 1) {
        // Its own effect first: it must not survive.
        await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, 'poisoned')`, [message.messageId]);
        await db.query('SELECT 1/0').catch(() => undefined);
      }
    });
    await vi.waitFor(async () => expect((await effectsByNote()).get('o-3')).toBe(1), WAIT);
    const byNote = await effectsByNote();
    for (let i = 0; i <= 6; i++) expect(byNote.get(`o-${i}`), `o-${i}`).toBe(1);
    expect(byNote.get('poisoned')).toBeUndefined();
    const shared = run.xids.get('o-3#1');
    expect([1, 2, 4, 5, 6].filter((i) => run.xids.get(`o-${i}#1`) === shared).length).toBeGreaterThanOrEqual(4);
    for (const i of [1, 2, 4, 5, 6]) expect(run.calls.get(`o-${i}`), `calls of o-${i}`).toBe(1);
    await vi.waitFor(() => expect(consumer.stats).toMatchObject({ handled: 7, failures: 1, retries: 1 }), WAIT);
    await consumer.stop();
  });

  it('a handler that meets a deadlock in a batch runs again alone, without spending an attempt; its neighbours commit once', async () => {
    await clearEffects();
    const s = `"${env.db.schema}"`;
    await env.db.pool.query(`CREATE TABLE IF NOT EXISTS ${s}.locks (id int PRIMARY KEY); INSERT INTO ${s}.locks VALUES (1), (2) ON CONFLICT DO NOTHING`);
    // The test's transaction holds row 2 and waits long before it looks for a deadlock, so the
    // handler (default deadlock_timeout, 1 s) is the one PostgreSQL picks as the victim.
    const other = await env.db.pool.connect();
    await other.query(`BEGIN; SET LOCAL deadlock_timeout = '20s'; SELECT * FROM ${s}.locks WHERE id = 2 FOR UPDATE`);
    let rowOneLocked!: () => void;
    const locked = new Promise<void>((resolve) => (rowOneLocked = resolve));
    const attempts: number[] = [];
    try {
      const { run, consumer } = await gathered('gc-deadlock', orders(4), async ({ payload, db, message }, call) => {
        if (payload.orderId !== 'o-2') return;
        attempts.push(message.attempt);
        if (call !== 1) return;
        await db.query(`SELECT * FROM ${s}.locks WHERE id = 1 FOR UPDATE`);
        rowOneLocked();
        await db.query(`SELECT * FROM ${s}.locks WHERE id = 2 FOR UPDATE`);
      });
      await locked;
      await sleep(200);
      // Closes the cycle: row 1 is the handler's, which waits for row 2.
      await other.query(`SELECT * FROM ${s}.locks WHERE id = 1 FOR UPDATE`);
      await other.query('COMMIT');
      await vi.waitFor(async () => expect((await effectsByNote()).get('o-2')).toBe(1), WAIT);
      const byNote = await effectsByNote();
      for (let i = 0; i <= 4; i++) expect(byNote.get(`o-${i}`), `o-${i}`).toBe(1);
      const shared = run.xids.get('o-2#1');
      expect([1, 3, 4].filter((i) => run.xids.get(`o-${i}#1`) === shared).length).toBeGreaterThanOrEqual(2);
      for (const i of [1, 3, 4]) expect(run.calls.get(`o-${i}`), `calls of o-${i}`).toBe(1);
      // Run twice, both as attempt 1: the deadlock was the batch's, not the handler's.
      expect(attempts).toEqual([1, 1]);
      await vi.waitFor(() => expect(consumer.stats).toMatchObject({ handled: 5, failures: 0, retries: 0 }), WAIT);
      await consumer.stop();
    } finally {
      await other.query('ROLLBACK').catch(() => undefined);
      other.release();
    }
  });

  it('a handler that ends the shared transaction itself (ROLLBACK, or COMMIT): every neighbour still has its effect exactly once', async () => {
    for (const statement of ['ROLLBACK', 'COMMIT']) {
      await clearEffects();
      const metrics = new MetricsRegistry();
      const { consumer } = await gathered(
        `gc-${statement.toLowerCase()}`,
        orders(6),
        async ({ payload, tx }, call) => {
          if (payload.orderId === 'o-3' && call === 1) await (tx as unknown as pg.PoolClient).query(statement);
        },
        { metrics },
      );
      await vi.waitFor(async () => {
        const byNote = await effectsByNote();
        for (let i = 0; i <= 6; i++) expect(byNote.get(`o-${i}`), `${statement}: o-${i}`).toBe(1);
        expect(consumer.stats.handled + consumer.stats.duplicates).toBe(7);
      }, WAIT);
      await sleep(300);
      const byNote = await effectsByNote();
      for (let i = 0; i <= 6; i++) expect(byNote.get(`o-${i}`), `${statement}: o-${i}`).toBe(1);
      expect(consumer.stats).toMatchObject({ failures: 0, retries: 0, deadLettered: 0 });
      expect(await metrics.render()).toContain(`mailroom_inbox_broken_batches_total{consumer="${consumer.name}"} 1`);
      await consumer.stop();
    }
  });

  it('the same id twice in one batch is applied once, the second counted as a duplicate', async () => {
    await clearEffects();
    const twin = '7c1e4a52-3b8d-4f0e-9a61-2d5b8c4e7f10';
    const list = [{ orderId: 'o-1' }, { orderId: 'o-twin', messageId: twin }, { orderId: 'o-2' }, { orderId: 'o-twin', messageId: twin }, { orderId: 'o-3' }];
    const duplicates: string[] = [];
    const { run, consumer } = await gathered('gc-twin', list, async () => undefined);
    consumer.on('duplicate', (m) => duplicates.push(m.messageId));
    await vi.waitFor(() => expect(consumer.stats).toMatchObject({ handled: 5, duplicates: 1 }), WAIT);
    expect(await effects(env, twin)).toBe(1);
    expect(run.calls.get('o-twin')).toBe(1);
    expect(duplicates).toEqual([twin]);
    // The twin shared its transaction with the rest of the batch.
    const shared = run.xids.get('o-twin#1');
    expect(['o-1', 'o-2', 'o-3'].filter((o) => run.xids.get(`${o}#1`) === shared)).toHaveLength(3);
    await consumer.stop();
  });

  it('per-key order holds with batching: a key waits for its held message while other keys share transactions', async () => {
    await clearEffects();
    // Two connections, both held: a-0 on one, z-0 on the other. The first messages of b, c and d
    // gather meanwhile; a-1.. must wait for a-0 (its key), never join them.
    const two = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 2 });
    two.on('error', () => undefined);
    const gates = new Map<string, () => void>();
    const held = (id: string): Promise<void> => new Promise((resolve) => gates.set(id, resolve));
    const seen: string[] = [];
    const xids = new Map<string, string>();
    try {
      const consumer = consumerFor(
        env,
        async ({ payload, db, message }) => {
          seen.push(payload.orderId);
          const { rows } = await db.query<{ xid: string }>('SELECT pg_catalog.pg_current_xact_id()::text AS xid');
          xids.set(payload.orderId, rows[0]?.xid ?? '?');
          if (payload.orderId === 'a-0' || payload.orderId === 'z-0') await held(payload.orderId);
          await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, payload.orderId]);
        },
        { name: env.broker.name('gc-order'), db: two, prefetch: 50, ordering: true },
      );
      await consumer.start();
      await publish(env, { orderId: 'a-0', total: 0 }, { key: 'a' });
      await publish(env, { orderId: 'z-0', total: 0 }, { key: 'z' });
      await vi.waitFor(() => expect([...gates.keys()].sort()).toEqual(['a-0', 'z-0']), WAIT);
      const keys = ['a', 'b', 'c', 'd'];
      for (let i = 0; i < 6; i++) for (const key of keys) if (!(key === 'a' && i === 0)) await publish(env, { orderId: `${key}-${i}`, total: i }, { key });
      await vi.waitFor(async () => expect(await queueDepth(env, consumer.queue)).toBe(0), WAIT);
      await sleep(100);
      gates.get('z-0')?.();
      // b, c and d run to their end while a-0 is held.
      await vi.waitFor(async () => expect(['b', 'c', 'd'].map((k) => seen.filter((o) => o.startsWith(`${k}-`)).length)).toEqual([6, 6, 6]), WAIT);
      await sleep(200);
      gates.get('a-0')?.();
      await vi.waitFor(() => expect(consumer.stats.handled).toBe(25), WAIT);
      for (const key of keys) expect(seen.filter((o) => o.startsWith(`${key}-`)), `handled order of ${key}`).toEqual(Array.from({ length: 6 }, (_, i) => `${key}-${i}`));
      const { rows } = await env.db.pool.query<{ note: string }>(`SELECT note FROM "${env.db.schema}".effects ORDER BY at`);
      for (const key of keys) expect(rows.map((r) => r.note).filter((o) => o.startsWith(`${key}-`)), `committed order of ${key}`).toEqual(Array.from({ length: 6 }, (_, i) => `${key}-${i}`));
      // Batching happened: the first messages of b, c and d gathered in one transaction.
      expect(new Set(['b-0', 'c-0', 'd-0'].map((o) => xids.get(o))).size).toBe(1);
      await consumer.stop();
    } finally {
      await two.end();
    }
  });
});
