// The saga workload's inventory service against the races the chaos runs produce: a reserve
// timeout fires while inventory is still reserving (a loaded machine, a paused process), so the
// release (the compensation) runs at the same moment as the reserve it compensates, in another
// transaction. Whichever commits first, the stock must come back and the order's reservation
// must not stay reserved. Real PostgreSQL, two sessions, the second one waiting on the first.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerBinding } from '@mailroom/inbox';
import { quoteIdentifier } from '@mailroom/core/internal';
import { sagaContracts } from '../src/saga-contracts.js';
import { inventoryHandlers, type SagaServiceContext } from '../src/saga-participants.js';
import { sagaTablesSql } from '../src/saga-workload.js';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let handlers: Map<string, HandlerBinding>;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(sagaTablesSql(db.schema, 1, 10));
  const service: SagaServiceContext = {
    schema: db.schema,
    contracts: sagaContracts('chaos.test'),
    process: 'inventory-test',
    failureRate: 0,
    defect: 'none',
    outside: (text, params) => db.pool.query(text, params),
    processorDelayMs: 1000,
  };
  handlers = new Map(inventoryHandlers(service).map((h) => [h.contract.type, h]));
});

afterAll(async () => {
  await db?.close();
});

/** Runs one inventory handler in the open transaction of `client`, as the inbox would. */
function handle(client: pg.PoolClient, type: 'chaos.saga.reserve' | 'chaos.saga.release', payload: Record<string, unknown>): Promise<void> {
  const binding = handlers.get(type);
  if (binding === undefined) throw new Error(`no handler for ${type}`);
  const context = { payload, message: { messageId: randomUUID(), attempt: 1 }, db: client, tx: client };
  return binding.handle(context as unknown as Parameters<HandlerBinding['handle']>[0]);
}

/** Resolves once the session `pid` waits for a lock (the other transaction's row). */
async function waitingOnLock(pid: number): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    const { rows } = await db.pool.query<{ waiting: boolean }>(`SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = $1`, [pid]);
    if (rows[0]?.waiting === true) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`session ${pid} never waited for a lock`);
}

async function reservation(orderId: string): Promise<{ status: string; available: number; ledger: string[] }> {
  const s = quoteIdentifier(db.schema);
  const r = await db.pool.query<{ status: string }>(`SELECT status FROM ${s}.saga_reservations WHERE order_id = $1`, [orderId]);
  const stock = await db.pool.query<{ available: number }>(`SELECT available FROM ${s}.saga_stock WHERE sku = 's0'`);
  const ledger = await db.pool.query<{ action: string }>(`SELECT action FROM ${s}.saga_ledger WHERE order_id = $1 ORDER BY id`, [orderId]);
  return { status: r.rows[0]?.status ?? 'none', available: stock.rows[0]?.available ?? -1, ledger: ledger.rows.map((x) => x.action) };
}

/**
 * Runs `first` in a transaction and, before it commits, `second` in another, which must then be
 * waiting on a row of the first; commits the first and hands `then` the second's outcome, its
 * transaction still open.
 */
async function race(
  first: (client: pg.PoolClient) => Promise<void>,
  second: (client: pg.PoolClient) => Promise<void>,
  then: (client: pg.PoolClient, outcome: PromiseSettledResult<void>) => Promise<void>,
): Promise<void> {
  const a = await db.pool.connect();
  const b = await db.pool.connect();
  try {
    await a.query('BEGIN');
    await first(a);
    await b.query('BEGIN');
    const pid = (await b.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number;
    const running = second(b);
    running.catch(() => undefined);
    await waitingOnLock(pid);
    await a.query('COMMIT');
    const [outcome] = await Promise.allSettled([running]);
    await then(b, outcome);
  } finally {
    a.release();
    b.release();
  }
}

describe('saga workload: inventory under a reserve and its release at once', () => {
  it('a release that runs while the reserve is not yet committed gives the stock back once the reserve commits', async () => {
    const orderId = randomUUID();
    const before = (await reservation(orderId)).available;
    await race(
      (a) => handle(a, 'chaos.saga.reserve', { orderId, sku: 's0', qty: 2 }),
      (b) => handle(b, 'chaos.saga.release', { orderId }),
      async (b, outcome) => {
        expect(outcome.status).toBe('fulfilled');
        await b.query('COMMIT');
      },
    );
    const after = await reservation(orderId);
    expect(after, JSON.stringify(after)).toMatchObject({ status: 'released', available: before, ledger: ['reserve', 'release'] });
  });

  it('a reserve that runs while the release (a tombstone) is not yet committed fails, and its retry refuses to reserve', async () => {
    const orderId = randomUUID();
    const before = (await reservation(orderId)).available;
    await race(
      (a) => handle(a, 'chaos.saga.release', { orderId }),
      (b) => handle(b, 'chaos.saga.reserve', { orderId, sku: 's0', qty: 2 }),
      async (b, outcome) => {
        // The reservation's insert meets the committed tombstone: the transaction fails and the inbox retries it.
        expect(outcome.status === 'rejected' ? String(outcome.reason) : 'fulfilled').toMatch(/duplicate key/);
        await b.query('ROLLBACK');
        await b.query('BEGIN');
        await handle(b, 'chaos.saga.reserve', { orderId, sku: 's0', qty: 2 });
        await b.query('COMMIT');
      },
    );
    const after = await reservation(orderId);
    expect(after, JSON.stringify(after)).toMatchObject({ status: 'released', available: before, ledger: ['release-tombstone', 'reserve-refused'] });
  });
});
