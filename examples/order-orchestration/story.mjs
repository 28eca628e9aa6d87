// The orchestrated saga story, as the demo tells it and the end-to-end test checks it: three
// services, three databases, an orchestrator in orders driving inventory and payments with
// commands; the four outcomes (confirmed, out of stock, declined, payment timed out), then two waves
// of orders during which the orchestrator and then payments are killed with SIGKILL and
// restarted. Returns what it measured; throws when a step does not converge in time or an
// invariant breaks.
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { databaseUrlFor, ensureDatabase } from '@mailroom/example-kit';
import { brokerNames, call, request, runMailroom, startProcess, waitUntil } from '@mailroom/example-kit/orchestra';
import { DECLINED_CARD, SLOW_CARD, orchestrationExchange } from './src/contracts.mjs';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const GOOD_CARD = '4242424242424242';
const SERVICES = ['inventory', 'payments', 'orders'];

/** The broker names this story declares under `prefix` (for the clean-up). */
export const orchestrationBrokerNames = (prefix) => brokerNames(prefix, SERVICES, [orchestrationExchange(prefix)]);

/**
 * @param {object} o
 * @param {string} o.databaseUrl  any database on the server; the services get their own databases
 * @param {string} o.amqpUrl
 * @param {string} o.prefix
 * @param {{orders: string, inventory: string, payments: string}} [o.databases]
 * @param {(icon: string, text: string) => void} [o.say]
 * @param {(name: string, line: string) => void} [o.onLine]
 * @param {number} [o.boundMs]           how long each convergence may take
 * @param {number} [o.burst]             orders of the two waves around the kills, together
 * @param {number} [o.paymentTimeoutMs]  how long the orchestrator waits for payments
 * @param {number} [o.processorDelayMs]  how late the slow card's processor answers (longer than the above)
 */
export async function orchestrationStory({
  databaseUrl,
  amqpUrl,
  prefix,
  databases = { orders: 'mailroom_demo_orch_orders', inventory: 'mailroom_demo_orch_inventory', payments: 'mailroom_demo_orch_payments' },
  say = () => {},
  onLine,
  boundMs = 15_000,
  burst = 16,
  paymentTimeoutMs = 3000,
  processorDelayMs = 5000,
}) {
  const urls = Object.fromEntries(Object.entries(databases).map(([service, name]) => [service, databaseUrlFor(databaseUrl, name)]));
  for (const name of Object.values(databases)) {
    if (await ensureDatabase(databaseUrl, name)) say('•', `created database ${name}`);
  }
  const run = prefix.slice(-6);
  const facts = { boundMs, convergenceMs: [], outcomes: {}, kills: [] };
  const processes = new Map();
  const pools = Object.fromEntries(Object.entries(urls).map(([service, url]) => [service, new pg.Pool({ connectionString: url, max: 2 })]));
  for (const pool of Object.values(pools)) pool.on('error', () => undefined);
  const env = {
    orders: { PAYMENT_TIMEOUT_MS: String(paymentTimeoutMs) },
    inventory: {},
    payments: { PROCESSOR_DELAY_MS: String(processorDelayMs) },
  };
  const start = async (name) => {
    const p = await startProcess(name, here(`./src/${name}-service.mjs`), { env: { DATABASE_URL: urls[name], AMQP_URL: amqpUrl, EXAMPLE_PREFIX: prefix, ...env[name] }, onLine });
    processes.set(name, p);
    return p;
  };
  const url = (name) => processes.get(name).url;
  const q = async (service, text, values) => (await pools[service].query(text, values)).rows;
  try {
    // Participants first (each binds its queue at start), then the orchestrator.
    for (const name of SERVICES) {
      const p = await start(name);
      say('▶', `${name} service on :${p.port}, database ${databases[name]}${name === 'orders' ? ', the orchestrator (order saga) + in-process relay' : ', inbox consumer + in-process relay'}`);
    }
    const lamp = `lamp-${run}`;
    const book = `book-${run}`;
    await call('PUT', `${url('inventory')}/stock/${lamp}`, { available: 5 });
    await call('PUT', `${url('inventory')}/stock/${book}`, { available: 1 });
    say('•', `inventory: ${lamp} × 5, ${book} × 1 in stock; the orchestrator waits ${paymentTimeoutMs} ms for payments`);

    const expect = (what, actual, wanted) => {
      if (JSON.stringify(actual) !== JSON.stringify(wanted)) throw new Error(`${what}: expected ${JSON.stringify(wanted)}, got ${JSON.stringify(actual)}`);
    };
    const place = (sku, qty, amount, card) => call('POST', `${url('orders')}/orders`, { sku, qty, amount, card });
    const stockOf = async (sku) => (await q('inventory', 'SELECT available FROM stock WHERE sku = $1', [sku]))[0]?.available;
    const paymentOf = async (id) => (await q('payments', 'SELECT status FROM payments WHERE order_id = $1', [id]))[0]?.status ?? null;
    const reservationOf = async (id) => (await q('inventory', 'SELECT status FROM reservations WHERE order_id = $1', [id]))[0]?.status ?? null;
    const ordersOf = async (ids) => q('orders', 'SELECT id, status, cancel_reason, amount FROM orders WHERE id = ANY($1::uuid[]) ORDER BY placed_at', [ids]);
    // Settled: the order is final and the last commands its saga sent were applied: a confirmed
    // order's reservation committed; a cancelled one's stock not held; for a timed-out payment, the
    // void applied by payments (it is the last command such an order gets: until then a charge
    // taken during the outage may stand; after it, the payment is voided, refunded or declined).
    const isSettled = async (ids) => {
      const orders = await ordersOf(ids);
      if (orders.some((o) => o.status === 'pending')) return false;
      const reservation = new Map((await q('inventory', 'SELECT order_id, status FROM reservations WHERE order_id = ANY($1::uuid[])', [ids])).map((r) => [r.order_id, r.status]));
      const voided = new Set((await q('payments', "SELECT order_id FROM handled_log WHERE order_id = ANY($1::uuid[]) AND type = 'payment.void'", [ids])).map((v) => v.order_id));
      return orders.every((o) => {
        if (o.status === 'confirmed') return reservation.get(o.id) === 'committed';
        const stockBack = ['released', 'rejected'].includes(reservation.get(o.id));
        if (o.cancel_reason === 'payment-timeout') return stockBack && voided.has(o.id);
        if (o.cancel_reason === 'payment-declined') return stockBack;
        return true;
      });
    };
    const waitSettled = async (what, ids) => {
      const ms = await waitUntil(what, () => isSettled(ids), boundMs);
      facts.convergenceMs.push(ms);
      return { ms, orders: await ordersOf(ids) };
    };
    const outcome = async (id) => {
      const [o] = await ordersOf([id]);
      return { status: o.status, reason: o.cancel_reason, reservation: await reservationOf(id), payment: await paymentOf(id) };
    };

    // 0. Hostile requests are refused at the door by the contract: nothing written, no saga started.
    const before = (await q('orders', 'SELECT count(*)::int AS n FROM orders'))[0].n;
    const hostile = [
      { sku: `lamp\u0000${run}`, qty: 1, amount: 10, card: GOOD_CARD },
      { sku: lamp, qty: -1, amount: 10, card: GOOD_CARD },
      { sku: lamp, qty: 1e9, amount: 10, card: GOOD_CARD },
      { sku: 'x'.repeat(100_000), qty: 1, amount: 10, card: GOOD_CARD },
      { sku: lamp, qty: 1, amount: 10, card: `${GOOD_CARD}\n${'9'.repeat(10_000)}` },
    ];
    const statuses = [];
    for (const body of hostile) statuses.push((await request('POST', `${url('orders')}/orders`, body)).status);
    const after = (await q('orders', 'SELECT count(*)::int AS n FROM orders'))[0].n;
    facts.hostileRefused = statuses.filter((status) => status === 400).length;
    say(facts.hostileRefused === hostile.length && after === before ? '✓' : '✗', `${hostile.length} hostile orders (a NUL byte, qty -1 and 10⁹, a 100 kB SKU, a card with a newline) → ${statuses.join(', ')}; ${after === before ? 'nothing' : after - before} written`);
    if (facts.hostileRefused !== hostile.length || after !== before) throw new Error(`hostile orders: answered ${statuses.join(', ')}, ${after - before} written`);

    // 1. The happy path: reserve → charge → confirm (and the reservation made final).
    const happy = await place(lamp, 2, 30, GOOD_CARD);
    say('→', `orders: order ${happy.id.slice(0, 8)} created (2 × lamp, card ok); its order.placed starts a saga`);
    let { ms } = await waitSettled('the happy order', [happy.id]);
    facts.outcomes.happy = { ...(await outcome(happy.id)), stock: await stockOf(lamp) };
    say('✓', `order ${happy.id.slice(0, 8)} ${facts.outcomes.happy.status} after ${ms} ms: inventory.reserve → reserved → payment.charge → charged → confirmed, inventory.commit; lamps left ${facts.outcomes.happy.stock}`);
    expect('the happy order', facts.outcomes.happy, { status: 'confirmed', reason: null, reservation: 'committed', payment: 'charged', stock: 3 });

    // 2. Out of stock: the saga ends at inventory, nothing to compensate, nothing charged.
    const short = await place(book, 3, 45, GOOD_CARD);
    say('→', `orders: order ${short.id.slice(0, 8)} created (3 × book, only 1 in stock)`);
    ({ ms } = await waitSettled('the out-of-stock order', [short.id]));
    facts.outcomes.outOfStock = { ...(await outcome(short.id)), stock: await stockOf(book) };
    say('✓', `order ${short.id.slice(0, 8)} ${facts.outcomes.outOfStock.status} (${facts.outcomes.outOfStock.reason}) after ${ms} ms: inventory.rejected; no charge asked for; books left ${facts.outcomes.outOfStock.stock}`);
    expect('the out-of-stock order', facts.outcomes.outOfStock, { status: 'cancelled', reason: 'out-of-stock', reservation: 'rejected', payment: null, stock: 1 });

    // 3. Declined: the orchestrator compensates the reservation (stock released), cancels the order.
    const declined = await place(lamp, 1, 15, DECLINED_CARD);
    say('→', `orders: order ${declined.id.slice(0, 8)} created (1 × lamp, a card that is declined)`);
    ({ ms } = await waitSettled('the declined order', [declined.id]));
    facts.outcomes.declined = { ...(await outcome(declined.id)), stock: await stockOf(lamp) };
    say('✓', `order ${declined.id.slice(0, 8)} ${facts.outcomes.declined.status} (${facts.outcomes.declined.reason}) after ${ms} ms: payment.declined → inventory.release; lamps back to ${facts.outcomes.declined.stock}, nothing charged`);
    expect('the declined order', facts.outcomes.declined, { status: 'cancelled', reason: 'payment-declined', reservation: 'released', payment: 'declined', stock: 3 });

    // 4. A payment that does not answer in time: the saga's timeout (a scheduled message) fires,
    // the orchestrator voids the payment and releases the stock; the processor's late answer then
    // finds the payment voided and charges nothing.
    const slow = await place(lamp, 1, 20, SLOW_CARD);
    const slowAt = Date.now();
    say('→', `orders: order ${slow.id.slice(0, 8)} created (1 × lamp, a card whose processor answers after ${processorDelayMs} ms)`);
    ({ ms } = await waitSettled('the timed-out order', [slow.id]));
    const timedOut = await outcome(slow.id);
    const timedOutAfter = Date.now() - slowAt;
    say(
      '✓',
      `order ${slow.id.slice(0, 8)} ${timedOut.status} (${timedOut.reason}) after ${timedOutAfter} ms: no answer within ${paymentTimeoutMs} ms → the timeout fired → payment.void (${timedOut.payment}) + inventory.release (${timedOut.reservation})`,
    );
    const lateMs = await waitUntil(
      "the slow processor's late answer",
      async () => (await q('payments', "SELECT count(*)::int AS n FROM handled_log WHERE order_id = $1 AND type = 'payment.processor-answered'", [slow.id]))[0].n > 0,
      processorDelayMs + boundMs,
    );
    facts.outcomes.timedOut = { ...(await outcome(slow.id)), stock: await stockOf(lamp), timedOutAfterMs: timedOutAfter };
    say('✓', `the processor answered ${lateMs} ms later: payment stays ${facts.outcomes.timedOut.payment}, nothing charged; lamps back to ${facts.outcomes.timedOut.stock}`);
    expect(
      'the timed-out order',
      { ...facts.outcomes.timedOut, timedOutAfterMs: undefined },
      { status: 'cancelled', reason: 'payment-timeout', reservation: 'released', payment: 'voided', stock: 3, timedOutAfterMs: undefined },
    );
    if (timedOutAfter < paymentTimeoutMs) throw new Error(`the order was cancelled after ${timedOutAfter} ms, before its timeout of ${paymentTimeoutMs} ms`);
    // What a person debugging it would look at: the instance and its history, from the CLI.
    const shown = await runMailroom(['saga', 'show', 'order-fulfilment', slow.id, '--json'], { MAILROOM_DATABASE_URL: urls.orders });
    if (shown.code !== 0) throw new Error(`mailroom saga show failed (${shown.code}): ${shown.stderr}`);
    const record = JSON.parse(shown.stdout);
    facts.timedOutHistory = { status: record.status, steps: record.history.map((h) => `${h.type}:${h.outcome}`) };
    say('✓', `$ mailroom saga show order-fulfilment ${slow.id.slice(0, 8)} → ${record.status} v${record.version}: ${record.history.map((h) => h.type).join(' → ')}`);

    // 5. Two waves of orders and SIGKILL mid-flight: the orchestrator is killed with the first
    // wave in flight; then payments, for longer than the orchestrator waits, and the second wave
    // is placed while it is down, so its timeouts fire during the outage.
    const desk = `desk-${run}`;
    const deskStock = Math.floor((burst * 3) / 4);
    const wave = Math.floor(burst / 2);
    await call('PUT', `${url('inventory')}/stock/${desk}`, { available: deskStock });
    const placeWave = (from, n) => Promise.all(Array.from({ length: n }, (_, i) => place(desk, 1, 100 + from + i, (from + i) % 4 === 3 ? DECLINED_CARD : GOOD_CARD)));
    const ids = [];
    const kill = async (name, downMs, whileDown = async () => undefined) => {
      const p = processes.get(name);
      const inFlight = (await ordersOf(ids)).filter((o) => o.status === 'pending').length;
      process.kill(p.pid, 'SIGKILL');
      await p.stop();
      say('✗', `SIGKILL ${name} (pid ${p.pid}) with ${inFlight} of ${ids.length} orders in flight; down for ${downMs} ms`);
      const downSince = Date.now();
      await whileDown();
      await sleep(Math.max(0, downMs - (Date.now() - downSince)));
      const again = await start(name);
      facts.kills.push({ service: name, inFlight, downMs });
      say('▶', `${name} restarted (pid ${again.pid}, :${again.port})`);
    };
    ids.push(...(await placeWave(0, wave)).map((o) => o.id));
    say('→', `orders: ${wave} orders for desks created at once (${deskStock} in stock, every 4th card declined)`);
    await sleep(50);
    await kill('orders', 1000);
    const first = await waitSettled('the first wave after the orchestrator restarted', [...ids]);
    const firstConfirmed = first.orders.filter((o) => o.status === 'confirmed').length;
    say('✓', `the first wave ended ${first.ms} ms after the restart, each saga from where it was: ${firstConfirmed} confirmed, ${first.orders.length - firstConfirmed} cancelled`);
    await kill('payments', paymentTimeoutMs + 1000, async () => {
      ids.push(...(await placeWave(wave, burst - wave)).map((o) => o.id));
      say('→', `orders: ${burst - wave} more orders created while payments is down; their payment timeouts fire during the outage`);
    });
    const result = await waitSettled('the orders after the kills', ids);
    const confirmed = result.orders.filter((o) => o.status === 'confirmed');
    const cancelled = result.orders.filter((o) => o.status === 'cancelled');
    const reasons = {};
    for (const o of cancelled) reasons[o.cancel_reason] = (reasons[o.cancel_reason] ?? 0) + 1;
    facts.burst = { confirmed: confirmed.length, cancelled: cancelled.length, reasons };
    say('✓', `all ${burst} settled ${result.ms} ms after the last restart: ${confirmed.length} confirmed, cancelled ${JSON.stringify(reasons)}`);

    // Invariants, read from the three databases.
    const allIds = [happy.id, short.id, declined.id, slow.id, ...ids];
    const orderRows = await ordersOf(allIds);
    const paymentRows = await q('payments', 'SELECT order_id, status, amount FROM payments WHERE order_id = ANY($1::uuid[])', [allIds]);
    const paymentOfOrder = new Map(paymentRows.map((p) => [p.order_id, p]));
    const effects = [];
    for (const service of SERVICES) {
      effects.push(...(await q(service, 'SELECT $2::text AS service, message_id, count(*)::int AS n FROM handled_log WHERE order_id = ANY($1::uuid[]) GROUP BY message_id', [allIds, service])));
    }
    const deskLeft = await stockOf(desk);
    const deskCommitted = (await q('inventory', "SELECT coalesce(sum(qty), 0)::int AS n FROM reservations WHERE sku = $1 AND status = 'committed'", [desk]))[0].n;
    const refunded = paymentRows.filter((p) => p.status === 'refunded').length;
    const [sagas] = await q(
      'orders',
      `SELECT count(*)::int AS instances, count(*) FILTER (WHERE status <> 'completed')::int AS open,
              (SELECT count(*)::int FROM mailroom.saga_history h WHERE h.saga = 'order-fulfilment' AND h.instance_id = ANY($1::text[]) AND h.outcome = 'ignored') AS ignored
         FROM mailroom.sagas WHERE saga = 'order-fulfilment' AND id = ANY($1::text[])`,
      [allIds],
    );
    facts.invariants = {
      orders: orderRows.length,
      notFinal: orderRows.filter((o) => o.status !== 'confirmed' && o.status !== 'cancelled').length,
      confirmedWithoutCharge: orderRows.filter((o) => o.status === 'confirmed' && paymentOfOrder.get(o.id)?.status !== 'charged').length,
      chargedAndCancelled: orderRows.filter((o) => o.status === 'cancelled' && paymentOfOrder.get(o.id)?.status === 'charged').length,
      wrongAmount: orderRows.filter((o) => o.status === 'confirmed' && Number(paymentOfOrder.get(o.id)?.amount) !== Number(o.amount)).length,
      refunded,
      sagaInstances: sagas.instances,
      sagasNotCompleted: sagas.open,
      lateRepliesIgnored: sagas.ignored,
      stepsApplied: effects.length,
      stepsAppliedMoreThanOnce: effects.filter((e) => e.n > 1).length,
      stockConserved: deskLeft + deskCommitted === deskStock && deskCommitted === confirmed.length,
    };
    const inv = facts.invariants;
    const ok = inv.sagaInstances === allIds.length && inv.sagasNotCompleted === 0 && inv.notFinal === 0 && inv.confirmedWithoutCharge === 0 && inv.chargedAndCancelled === 0 && inv.wrongAmount === 0 && inv.stepsAppliedMoreThanOnce === 0 && inv.stockConserved;
    say(
      ok ? '✓' : '✗',
      `invariants over ${inv.orders} orders: ${inv.notFinal} not ended, ${inv.confirmedWithoutCharge + inv.wrongAmount} confirmed without their charge, ${inv.chargedAndCancelled} both charged and cancelled (${refunded} charged late and refunded), stock ${inv.stockConserved ? 'conserved' : 'NOT conserved'} (${deskLeft} left + ${deskCommitted} sold, ${deskStock} at the start)`,
    );
    say(
      ok ? '✓' : '✗',
      `${inv.sagaInstances} saga instances, ${inv.sagasNotCompleted} not completed; ${inv.stepsApplied} commands, replies and saga steps handled across three services, ${inv.stepsAppliedMoreThanOnce} more than once; ${inv.lateRepliesIgnored} late replies to ended sagas recorded as ignored`,
    );
    if (!ok) throw new Error(`orchestration invariants broken: ${JSON.stringify(inv)}`);

    facts.exitCodes = {};
    for (const name of [...SERVICES].reverse()) {
      facts.exitCodes[name] = await processes.get(name).stop();
      processes.delete(name);
    }
    say(Object.values(facts.exitCodes).every((c) => c === 0) ? '■' : '✗', `stopped orders, payments, inventory (exit codes ${JSON.stringify(facts.exitCodes)})`);
    return facts;
  } finally {
    for (const p of processes.values()) await p.stop(2000);
    for (const pool of Object.values(pools)) await pool.end();
  }
}
