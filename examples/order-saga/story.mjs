// The saga story, as the demo tells it and the end-to-end test checks it: three services, three
// databases, the three outcomes, a duplicate delivery, then a burst of concurrent orders; returns
// what it measured, and throws when a step does not converge in time or an invariant breaks.
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { enqueue } from '@mailroom/outbox';
import { databaseUrlFor, ensureDatabase } from '@mailroom/example-kit';
import { brokerNames, call, startProcess, waitUntil } from '@mailroom/example-kit/orchestra';
import { DECLINED_CARD, sagaContracts, sagaExchange } from './src/contracts.mjs';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const GOOD_CARD = '4242424242424242';

/** The broker names this story declares under `prefix` (for the clean-up). */
export const sagaBrokerNames = (prefix) => brokerNames(prefix, ['orders', 'inventory', 'payments'], [sagaExchange(prefix)]);

/**
 * @param {object} o
 * @param {string} o.databaseUrl  any database on the server; the services get their own databases
 * @param {string} o.amqpUrl
 * @param {string} o.prefix
 * @param {{orders: string, inventory: string, payments: string}} [o.databases]
 * @param {(icon: string, text: string) => void} [o.say]
 * @param {(name: string, line: string) => void} [o.onLine]
 * @param {number} [o.boundMs]    how long each convergence may take
 * @param {number} [o.burst]      orders placed at once in the last step
 */
export async function sagaStory({
  databaseUrl,
  amqpUrl,
  prefix,
  databases = { orders: 'mailroom_demo_shop_orders', inventory: 'mailroom_demo_inventory', payments: 'mailroom_demo_payments' },
  say = () => {},
  onLine,
  boundMs = 15_000,
  burst = 24,
}) {
  const urls = Object.fromEntries(Object.entries(databases).map(([service, name]) => [service, databaseUrlFor(databaseUrl, name)]));
  for (const name of Object.values(databases)) {
    if (await ensureDatabase(databaseUrl, name)) say('•', `created database ${name}`);
  }
  const run = prefix.slice(-6);
  const facts = { boundMs, convergenceMs: [], outcomes: {} };
  const processes = [];
  const pools = Object.fromEntries(Object.entries(urls).map(([service, url]) => [service, new pg.Pool({ connectionString: url, max: 2 })]));
  for (const pool of Object.values(pools)) pool.on('error', () => undefined);
  try {
    const svc = {};
    // Consumers first (each binds its queue at start), then the one that starts sagas.
    for (const name of ['inventory', 'payments', 'orders']) {
      svc[name] = await startProcess(name, here(`./src/${name}-service.mjs`), { env: { DATABASE_URL: urls[name], AMQP_URL: amqpUrl, EXAMPLE_PREFIX: prefix }, onLine });
      processes.push(svc[name]);
      say('▶', `${name} service on :${svc[name].port}, database ${databases[name]}, inbox consumer + in-process relay`);
    }
    const lamp = `lamp-${run}`;
    const book = `book-${run}`;
    await call('PUT', `${svc.inventory.url}/stock/${lamp}`, { available: 5 });
    await call('PUT', `${svc.inventory.url}/stock/${book}`, { available: 1 });
    say('•', `inventory: ${lamp} × 5, ${book} × 1 in stock`);

    const expect = (what, actual, wanted) => {
      if (JSON.stringify(actual) !== JSON.stringify(wanted)) throw new Error(`${what}: expected ${JSON.stringify(wanted)}, got ${JSON.stringify(actual)}`);
    };
    const settled = async (id) => {
      const order = await call('GET', `${svc.orders.url}/orders/${id}`);
      return order.status === 'placed' ? undefined : order;
    };
    const place = (sku, qty, amount, card) => call('POST', `${svc.orders.url}/orders`, { sku, qty, amount, card });
    const waitSettled = async (what, ids) => {
      const ms = await waitUntil(what, async () => (await Promise.all(ids.map(settled))).every(Boolean), boundMs);
      facts.convergenceMs.push(ms);
      return { ms, orders: await Promise.all(ids.map((id) => call('GET', `${svc.orders.url}/orders/${id}`))) };
    };
    const stockOf = async (sku) => (await call('GET', `${svc.inventory.url}/stock/${sku}`)).available;
    const paymentOf = async (id) => {
      const res = await fetch(`${svc.payments.url}/payments/${id}`);
      return res.status === 404 ? null : res.json();
    };

    // 1. The happy path: placed → reserved → charged → confirmed.
    const happy = await place(lamp, 2, 30, GOOD_CARD);
    say('→', `orders: order ${happy.id.slice(0, 8)} placed (2 × lamp, card ok): order.placed committed with the row`);
    let { ms, orders: [h] } = await waitSettled('the happy order', [happy.id]);
    const happyPayment = await paymentOf(happy.id);
    facts.outcomes.happy = { status: h.status, payment: happyPayment?.status ?? null, stock: await stockOf(lamp) };
    say(h.status === 'confirmed' ? '✓' : '✗', `order ${happy.id.slice(0, 8)} ${h.status} after ${ms} ms: stock.reserved → payment.charged (${happyPayment?.amount}) → confirmed; lamps left ${facts.outcomes.happy.stock}`);
    expect('the happy order', facts.outcomes.happy, { status: 'confirmed', payment: 'charged', stock: 3 });

    // 2. Out of stock: the saga ends at inventory, nothing to compensate, nothing charged.
    const short = await place(book, 3, 45, GOOD_CARD);
    say('→', `orders: order ${short.id.slice(0, 8)} placed (3 × book, only 1 in stock)`);
    ({ ms, orders: [h] } = await waitSettled('the out-of-stock order', [short.id]));
    facts.outcomes.outOfStock = { status: h.status, reason: h.cancel_reason, payment: (await paymentOf(short.id))?.status ?? null, stock: await stockOf(book) };
    say(h.status === 'cancelled' ? '✓' : '✗', `order ${short.id.slice(0, 8)} ${h.status} (${h.cancel_reason}) after ${ms} ms: stock.rejected; no payment attempted; books left ${facts.outcomes.outOfStock.stock}`);
    expect('the out-of-stock order', facts.outcomes.outOfStock, { status: 'cancelled', reason: 'out-of-stock', payment: null, stock: 1 });

    // 3. Declined payment: the reservation is compensated (stock released), the order cancelled.
    const declined = await place(lamp, 1, 15, DECLINED_CARD);
    say('→', `orders: order ${declined.id.slice(0, 8)} placed (1 × lamp, a card that is declined)`);
    ({ ms, orders: [h] } = await waitSettled('the declined order', [declined.id]));
    // The release is a separate handler in inventory: wait for it too.
    const released = await waitUntil('the stock release', async () => (await call('GET', `${svc.inventory.url}/reservations/${declined.id}`)).status === 'released', boundMs);
    facts.outcomes.declined = { status: h.status, reason: h.cancel_reason, payment: (await paymentOf(declined.id))?.status ?? null, stock: await stockOf(lamp) };
    say(
      h.status === 'cancelled' ? '✓' : '✗',
      `order ${declined.id.slice(0, 8)} ${h.status} (${h.cancel_reason}) after ${ms} ms: reserved → payment.declined → stock released (+${released} ms); lamps back to ${facts.outcomes.declined.stock}, nothing charged`,
    );
    expect('the declined order', facts.outcomes.declined, { status: 'cancelled', reason: 'payment-declined', payment: 'declined', stock: 3 });

    // 4. A duplicate: order.placed of the happy order is sent again with its message id (as a
    // relay that crashed after publishing, before deleting the row, would). Inventory's inbox
    // drops it: no second reservation, no second charge.
    const { OrderPlaced } = sagaContracts(prefix);
    const duplicate = OrderPlaced.create({ orderId: happy.id, sku: lamp, qty: 2, amount: 30, card: GOOD_CARD }, { messageId: happy.placed_message_id, key: happy.id });
    const client = await pools.orders.connect();
    try {
      await client.query('BEGIN');
      await enqueue(client, duplicate);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const before = (await call('GET', `${svc.inventory.url}/stats`)).consumer.duplicates;
    ms = await waitUntil('the duplicate to reach inventory', async () => (await call('GET', `${svc.inventory.url}/stats`)).consumer.duplicates > before, boundMs);
    facts.duplicateIgnored = (await stockOf(lamp)) === facts.outcomes.declined.stock;
    say(facts.duplicateIgnored ? '✓' : '✗', `order.placed ${happy.placed_message_id.slice(0, 8)} delivered again → inventory's inbox found it a duplicate after ${ms} ms; lamps still ${await stockOf(lamp)}`);
    if (!facts.duplicateIgnored) throw new Error('the duplicate order.placed changed the stock');

    // 5. A burst: concurrent orders for few items; some cards declined.
    const desk = `desk-${run}`;
    const deskStock = Math.floor(burst / 2);
    await call('PUT', `${svc.inventory.url}/stock/${desk}`, { available: deskStock });
    const placed = await Promise.all(Array.from({ length: burst }, (_, i) => place(desk, 1, 100 + i, i % 4 === 3 ? DECLINED_CARD : GOOD_CARD)));
    say('→', `orders: ${burst} orders for desks placed at once (${deskStock} in stock, every 4th card declined)`);
    const result = await waitSettled('the burst of orders', placed.map((o) => o.id));
    const confirmed = result.orders.filter((o) => o.status === 'confirmed');
    const cancelled = result.orders.filter((o) => o.status === 'cancelled');
    // The last handlers: releases (compensations) and commitments of the reservations.
    await waitUntil(
      'every reservation released or committed',
      async () => (await pools.inventory.query("SELECT count(*)::int AS n FROM reservations WHERE sku = ANY($1) AND status = 'reserved'", [[lamp, book, desk]])).rows[0].n === 0,
      boundMs,
    );
    say('✓', `all ${burst} settled after ${result.ms} ms: ${confirmed.length} confirmed, ${cancelled.filter((o) => o.cancel_reason === 'out-of-stock').length} out of stock, ${cancelled.filter((o) => o.cancel_reason === 'payment-declined').length} declined`);

    // Invariants, read from the three databases.
    const allIds = [happy.id, short.id, declined.id, ...placed.map((o) => o.id)];
    const q = async (service, text, values) => (await pools[service].query(text, values)).rows;
    const orderRows = await q('orders', 'SELECT id, status, amount FROM orders WHERE id = ANY($1::uuid[])', [allIds]);
    const paymentRows = await q('payments', 'SELECT order_id, status, amount FROM payments WHERE order_id = ANY($1::uuid[])', [allIds]);
    const charged = new Map(paymentRows.filter((p) => p.status === 'charged').map((p) => [p.order_id, Number(p.amount)]));
    const effects = [];
    for (const service of ['orders', 'inventory', 'payments']) {
      effects.push(...(await q(service, 'SELECT $2::text AS service, message_id, count(*)::int AS n FROM handled_log WHERE order_id = ANY($1::uuid[]) GROUP BY message_id', [allIds, service])));
    }
    const deskLeft = await stockOf(desk);
    const deskCommitted = (await q('inventory', "SELECT coalesce(sum(qty), 0)::int AS n FROM reservations WHERE sku = $1 AND status = 'committed'", [desk]))[0].n;
    facts.invariants = {
      orders: orderRows.length,
      stillPlaced: orderRows.filter((o) => o.status === 'placed').length,
      confirmedWithoutCharge: orderRows.filter((o) => o.status === 'confirmed' && !charged.has(o.id)).length,
      cancelledButCharged: orderRows.filter((o) => o.status === 'cancelled' && charged.has(o.id)).length,
      chargedTwiceOrWrongAmount: orderRows.filter((o) => charged.has(o.id) && charged.get(o.id) !== Number(o.amount)).length,
      eventsHandled: effects.length,
      eventsHandledMoreThanOnce: effects.filter((e) => e.n > 1).length,
      stockConserved: deskLeft + deskCommitted === deskStock && deskCommitted === confirmed.length,
    };
    const inv = facts.invariants;
    const ok =
      inv.stillPlaced === 0 && inv.confirmedWithoutCharge === 0 && inv.cancelledButCharged === 0 && inv.chargedTwiceOrWrongAmount === 0 && inv.eventsHandledMoreThanOnce === 0 && inv.stockConserved;
    say(ok ? '✓' : '✗', `invariants over ${inv.orders} orders: every confirmed order charged once, no cancelled order charged, stock conserved (${deskLeft} left + ${deskCommitted} sold = ${deskStock})`);
    say(ok ? '✓' : '✗', `${inv.eventsHandled} saga events handled across three services, ${inv.eventsHandledMoreThanOnce} more than once`);
    if (!ok) throw new Error(`saga invariants broken: ${JSON.stringify(inv)}`);
    facts.burst = { confirmed: confirmed.length, cancelled: cancelled.length };

    facts.exitCodes = {};
    for (const p of processes.splice(0).reverse()) facts.exitCodes[p.name] = await p.stop();
    say(Object.values(facts.exitCodes).every((c) => c === 0) ? '■' : '✗', `stopped orders, payments, inventory (exit codes ${JSON.stringify(facts.exitCodes)})`);
    return facts;
  } finally {
    for (const p of processes) await p.stop(2000);
    for (const pool of Object.values(pools)) await pool.end();
  }
}
