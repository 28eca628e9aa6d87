// The demo's story as an end-to-end test: the same service processes, the same requests, with
// assertions. Each run gets its own five databases and its own exchange and queue prefix, all
// dropped afterwards, so it never meets a demo or another run on the same servers.
//
// The bound: every convergence step (an event through outbox, relay, broker and inbox, or a whole
// saga) must finish within BOUND_MS. Locally a step takes well under a second; the bound is
// generous because the test shares two cores with other test files.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { databaseUrlFor, dropDatabase } from '@mailroom/example-kit';
import { cleanupBroker } from '@mailroom/example-kit/orchestra';
import { usersOrdersBrokerNames, usersOrdersStory } from '@mailroom/example-users-orders/story';
import { sagaBrokerNames, sagaStory } from '@mailroom/example-order-saga/story';
import { orchestrationBrokerNames, orchestrationStory } from '@mailroom/example-order-orchestration/story';
import { testUrls } from '../../../test/helpers.js';

const BOUND_MS = 20_000;
const run = randomBytes(4).toString('hex');
const prefix = `mailroom-e2e-${run}`;
const db = {
  users: `mr_e2e_${run}_users`,
  orders: `mr_e2e_${run}_orders`,
  shopOrders: `mr_e2e_${run}_shop_orders`,
  inventory: `mr_e2e_${run}_inventory`,
  payments: `mr_e2e_${run}_payments`,
  orchOrders: `mr_e2e_${run}_orch_orders`,
  orchInventory: `mr_e2e_${run}_orch_inventory`,
  orchPayments: `mr_e2e_${run}_orch_payments`,
};

const lines: string[] = [];
const say = (icon: string, text: string): void => {
  lines.push(`${icon} ${text}`);
};

async function query<T>(database: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrlFor(testUrls().databaseUrl, database) });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

afterAll(async () => {
  const { databaseUrl, amqpUrl } = testUrls();
  await cleanupBroker(amqpUrl, usersOrdersBrokerNames(prefix));
  await cleanupBroker(amqpUrl, sagaBrokerNames(prefix));
  await cleanupBroker(amqpUrl, orchestrationBrokerNames(prefix));
  for (const name of Object.values(db)) await dropDatabase(databaseUrl, name);
}, 60_000);

describe('examples: the demo story end to end', () => {
  it('users → orders: the projection converges, history keeps the email of the order, a poison event is dead-lettered and replayed with the CLI', async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const facts = await usersOrdersStory({ databaseUrl, amqpUrl, prefix, databases: { users: db.users, orders: db.orders }, say, boundMs: BOUND_MS }).catch(
      (error: unknown) => {
        throw new Error(`${(error as Error).message}\nstory so far:\n${lines.join('\n')}`);
      },
    );
    expect(Math.max(...facts.convergenceMs)).toBeLessThan(BOUND_MS);
    // The order placed before the email change keeps the address it was placed with.
    expect(facts.historyKept).toBe(true);
    expect(facts.history).toHaveLength(2);
    expect(facts.history[0]?.emailAtOrder).not.toBe(facts.history[0]?.currentEmail);
    expect(facts.history[1]?.emailAtOrder).toBe(facts.history[1]?.currentEmail);
    // The poison event: dead-lettered by the consumer, kept out of the projection, replayed after the fix.
    expect(facts.deadLetter.reason).toBe('invalid-payload');
    expect(facts.deadLetter.source).toBe(`${prefix}.orders`);
    expect(facts.poisonBlockedProjection).toBe(true);
    expect(facts.replayed).toBe(true);
    // One effect per event, even though the replay was run twice.
    expect(facts.events).toBe(6);
    expect(facts.maxEffectsPerEvent).toBe(1);
    const [replayed] = await query<{ replayed: boolean }>(db.orders, 'SELECT replayed_at IS NOT NULL AS replayed FROM mailroom.dead_letters WHERE id = $1', [facts.deadLetter.id]);
    expect(replayed?.replayed).toBe(true);
    // Graceful shutdown, the sidecar relay included.
    expect(facts.exitCodes).toEqual({ orders: 0, users: 0, 'users-relay': 0 });
    // The users database is the only place users are written; orders never read it.
    const [count] = await query<{ n: number }>(db.orders, 'SELECT count(*)::int AS n FROM user_projection');
    expect(count?.n).toBe(4);
  }, 90_000);

  it('order saga: confirmed, out of stock and declined outcomes with compensations; no money for a cancelled order', async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const facts = await sagaStory({
      databaseUrl,
      amqpUrl,
      prefix,
      databases: { orders: db.shopOrders, inventory: db.inventory, payments: db.payments },
      say,
      boundMs: BOUND_MS,
      burst: 24,
    }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\nstory so far:\n${lines.join('\n')}`);
    });
    expect(Math.max(...facts.convergenceMs)).toBeLessThan(BOUND_MS);
    expect(facts.outcomes.happy).toEqual({ status: 'confirmed', payment: 'charged', stock: 3 });
    expect(facts.outcomes.outOfStock).toEqual({ status: 'cancelled', reason: 'out-of-stock', payment: null, stock: 1 });
    // The compensation: the reservation of the declined order was released.
    expect(facts.outcomes.declined).toEqual({ status: 'cancelled', reason: 'payment-declined', payment: 'declined', stock: 3 });
    expect(facts.duplicateIgnored).toBe(true);
    expect(facts.invariants).toMatchObject({
      orders: 27,
      stillPlaced: 0,
      confirmedWithoutCharge: 0,
      cancelledButCharged: 0,
      chargedTwiceOrWrongAmount: 0,
      eventsHandledMoreThanOnce: 0,
      stockConserved: true,
    });
    expect(facts.burst.confirmed + facts.burst.cancelled).toBe(24);
    expect(facts.exitCodes).toEqual({ orders: 0, inventory: 0, payments: 0 });

    // Checked again straight from the databases: money only for confirmed orders, exactly their amount.
    const orders = await query<{ id: string; status: string; amount: string }>(db.shopOrders, 'SELECT id, status, amount FROM orders');
    const payments = await query<{ order_id: string; status: string; amount: string }>(db.payments, 'SELECT order_id, status, amount FROM payments');
    const charged = new Map(payments.filter((p) => p.status === 'charged').map((p) => [p.order_id, p.amount]));
    for (const order of orders) {
      if (order.status === 'confirmed') expect(charged.get(order.id)).toBe(order.amount);
      else expect(charged.has(order.id)).toBe(false);
    }
    expect(charged.size).toBe(orders.filter((o) => o.status === 'confirmed').length);
    // One effect per event, from the databases: each handled event has one inbox row and one
    // handled_log row in each service, never two.
    for (const [database, consumer] of [
      [db.shopOrders, 'orders'],
      [db.inventory, 'inventory'],
      [db.payments, 'payments'],
    ] as const) {
      const twice = await query(database, 'SELECT message_id FROM handled_log GROUP BY message_id HAVING count(*) > 1');
      expect(twice).toEqual([]);
      const [counts] = await query<{ inbox: number; handled: number }>(
        database,
        'SELECT (SELECT count(*)::int FROM mailroom.inbox WHERE consumer = $1) AS inbox, (SELECT count(*)::int FROM handled_log) AS handled',
        [consumer],
      );
      expect(counts?.handled).toBeGreaterThan(0);
      expect(counts?.inbox).toBe(counts?.handled);
    }
    // Every reservation is settled: committed for confirmed orders, released for declined ones.
    const reservations = await query<{ order_id: string; status: string }>(db.inventory, 'SELECT order_id, status FROM reservations');
    const statusOf = new Map(orders.map((o) => [o.id, o.status]));
    for (const r of reservations) expect(r.status).toBe(statusOf.get(r.order_id) === 'confirmed' ? 'committed' : 'released');
  }, 90_000);

  it('orchestrated saga: commands, a payment timeout and compensations; every order ends confirmed or cancelled after SIGKILL of the orchestrator and of payments mid-flight', async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    // Timeouts generous enough that the happy path never meets them on a loaded machine.
    const paymentTimeoutMs = 5000;
    const facts = await orchestrationStory({
      databaseUrl,
      amqpUrl,
      prefix,
      databases: { orders: db.orchOrders, inventory: db.orchInventory, payments: db.orchPayments },
      say,
      boundMs: BOUND_MS,
      burst: 16,
      paymentTimeoutMs,
      processorDelayMs: paymentTimeoutMs + 3000,
    }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\nstory so far:\n${lines.join('\n')}`);
    });
    expect(Math.max(...facts.convergenceMs)).toBeLessThan(BOUND_MS);
    // NUL bytes, a negative or huge quantity, a 100 kB SKU, a card with a newline: 400, nothing written.
    expect(facts.hostileRefused).toBe(5);
    expect(facts.outcomes.happy).toEqual({ status: 'confirmed', reason: null, reservation: 'committed', payment: 'charged', stock: 3 });
    expect(facts.outcomes.outOfStock).toEqual({ status: 'cancelled', reason: 'out-of-stock', reservation: 'rejected', payment: null, stock: 1 });
    // The compensations: the reservation released; for the timeout also the payment voided, and
    // the processor's late answer charged nothing.
    expect(facts.outcomes.declined).toEqual({ status: 'cancelled', reason: 'payment-declined', reservation: 'released', payment: 'declined', stock: 3 });
    expect(facts.outcomes.timedOut).toMatchObject({ status: 'cancelled', reason: 'payment-timeout', reservation: 'released', payment: 'voided', stock: 3 });
    expect(facts.outcomes.timedOut.timedOutAfterMs).toBeGreaterThanOrEqual(paymentTimeoutMs);
    // Its history, as `mailroom saga show` prints it: the timeout moved it, nothing after.
    expect(facts.timedOutHistory).toEqual({ status: 'completed', steps: ['order.placed:applied', 'inventory.reserved:applied', 'order.step-timed-out:applied'] });
    expect(facts.kills.map((k) => k.service)).toEqual(['orders', 'payments']);
    expect(facts.burst.confirmed + facts.burst.cancelled).toBe(16);
    expect(facts.invariants).toMatchObject({
      orders: 20,
      sagaInstances: 20,
      sagasNotCompleted: 0,
      notFinal: 0,
      confirmedWithoutCharge: 0,
      chargedAndCancelled: 0,
      wrongAmount: 0,
      stepsAppliedMoreThanOnce: 0,
      stockConserved: true,
    });
    expect(facts.exitCodes).toEqual({ orders: 0, payments: 0, inventory: 0 });

    // Checked again straight from the databases: money kept only for confirmed orders.
    const orders = await query<{ id: string; status: string; amount: string }>(db.orchOrders, 'SELECT id, status, amount FROM orders');
    const payments = await query<{ order_id: string; status: string; amount: string | null }>(db.orchPayments, 'SELECT order_id, status, amount FROM payments');
    const kept = new Map(payments.filter((p) => p.status === 'charged').map((p) => [p.order_id, p.amount]));
    for (const order of orders) {
      if (order.status === 'confirmed') expect(kept.get(order.id)).toBe(order.amount);
      else expect(order.status === 'cancelled' && !kept.has(order.id), `order ${order.id} is ${order.status}`).toBe(true);
    }
    // Every reservation ended: committed for confirmed orders, released or rejected for cancelled ones.
    const reservations = await query<{ order_id: string; status: string }>(db.orchInventory, 'SELECT order_id, status FROM reservations');
    const statusOf = new Map(orders.map((o) => [o.id, o.status]));
    for (const r of reservations) {
      if (statusOf.get(r.order_id) === 'confirmed') expect(r.status).toBe('committed');
      else expect(['released', 'rejected']).toContain(r.status);
    }
    // One effect per message in each service: never two handled_log rows for one message, and in
    // the participants one inbox row per handled_log row. (The orchestrator's inbox also holds
    // replies that reached an instance already completed: the saga takes them without a step.)
    for (const [database, consumer] of [
      [db.orchOrders, 'orders'],
      [db.orchInventory, 'inventory'],
      [db.orchPayments, 'payments'],
    ] as const) {
      expect(await query(database, 'SELECT message_id FROM handled_log GROUP BY message_id HAVING count(*) > 1')).toEqual([]);
      const [counts] = await query<{ inbox: number; handled: number }>(
        database,
        'SELECT (SELECT count(*)::int FROM mailroom.inbox WHERE consumer = $1) AS inbox, (SELECT count(*)::int FROM handled_log) AS handled',
        [consumer],
      );
      if (consumer === 'orders') expect(counts?.inbox).toBeGreaterThanOrEqual(counts?.handled ?? 0);
      else expect(counts?.inbox).toBe(counts?.handled);
    }
  }, 150_000);
});
