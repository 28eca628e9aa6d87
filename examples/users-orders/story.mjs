// The users/orders story, as the demo tells it and the end-to-end test checks it. Starts the
// services as processes, drives their HTTP APIs and the mailroom CLI, waits for the projection
// to converge, and returns what it measured; throws when a step does not converge in time.
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import pg from 'pg';
import { databaseUrlFor, ensureDatabase } from '@mailroom/example-kit';
import { MAILROOM_CLI, brokerNames, call, request, runMailroom, startProcess, waitUntil } from '@mailroom/example-kit/orchestra';
import { usersExchange } from './src/contracts.mjs';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

/** The broker names this story declares under `prefix` (for the clean-up). */
export const usersOrdersBrokerNames = (prefix) => brokerNames(prefix, ['orders'], [usersExchange(prefix)]);

function runScript(script, args, env) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args], { env: { ...process.env, ...env }, timeout: 20_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${script} failed: ${stderr || error.message}`)) : resolve(stdout),
    );
  });
}

/**
 * @param {object} o
 * @param {string} o.databaseUrl  any database on the server; the services get their own databases
 * @param {string} o.amqpUrl
 * @param {string} o.prefix       prefix of every exchange and queue of this run
 * @param {{users: string, orders: string}} [o.databases]
 * @param {(icon: string, text: string) => void} [o.say]
 * @param {(name: string, line: string) => void} [o.onLine]  every line the processes print
 * @param {number} [o.boundMs]    how long each convergence may take
 */
export async function usersOrdersStory({ databaseUrl, amqpUrl, prefix, databases = { users: 'mailroom_demo_users', orders: 'mailroom_demo_orders' }, say = () => {}, onLine, boundMs = 15_000 }) {
  const usersDb = databaseUrlFor(databaseUrl, databases.users);
  const ordersDb = databaseUrlFor(databaseUrl, databases.orders);
  for (const name of [databases.users, databases.orders]) {
    if (await ensureDatabase(databaseUrl, name)) say('•', `created database ${name}`);
  }
  const facts = { convergenceMs: [], boundMs };
  const processes = [];
  const start = async (name, script, env, args) => {
    const p = await startProcess(name, script, { env: { EXAMPLE_PREFIX: prefix, AMQP_URL: amqpUrl, ...env }, args, onLine });
    processes.push(p);
    return p;
  };
  const ordersPool = new pg.Pool({ connectionString: ordersDb, max: 2 });
  ordersPool.on('error', () => undefined);
  try {
    // Orders first: its consumer binds its queue to the users exchange before anything is
    // published there (the relay publishes `mandatory`, so an unbound event would come back).
    let orders = await start('orders', here('./src/orders-service.mjs'), { DATABASE_URL: ordersDb, ORDERS_RELEASE: '1.0' });
    say('▶', `orders service (release 1.0) on :${orders.port}, database ${databases.orders}, inbox consumer + in-process relay`);
    const users = await start('users', here('./src/users-service.mjs'), { DATABASE_URL: usersDb });
    say('▶', `users service on :${users.port}, database ${databases.users}, no broker connection of its own`);
    const relay = await start('users-relay', MAILROOM_CLI, {
      MAILROOM_DATABASE_URL: usersDb,
      MAILROOM_AMQP_URL: amqpUrl,
      MAILROOM_HTTP_HOST: '127.0.0.1',
      MAILROOM_HTTP_PORT: '0',
      MAILROOM_RELAY_NAME: 'users-relay',
      MAILROOM_LOG_LEVEL: 'warn',
    }, ['relay']);
    say('▶', `users relay as a sidecar: \`mailroom relay\` (pid ${relay.pid}), /healthz /readyz /metrics on :${relay.port}`);
    await waitUntil('the users relay sidecar ready', async () => (await request('GET', `${relay.url}/readyz`)).status === 200, boundMs);

    // 1. Users are created in the users database; their events leave through the outbox.
    const people = [
      ['ada', 'Ada Lovelace'],
      ['grace', 'Grace Hopper'],
      ['alan', 'Alan Turing'],
    ];
    const created = [];
    const run = prefix.slice(-6);
    for (const [handle, name] of people) {
      created.push(await call('POST', `${users.url}/users`, { email: `${handle}.${run}@example.org`, name }));
    }
    say('→', `users: created ${created.map((u) => u.name.split(' ')[0]).join(', ')}; each row committed with its user.created in the outbox`);
    const ms1 = await waitUntil(
      'the orders projection of the new users',
      async () => (await Promise.all(created.map((u) => request('GET', `${orders.url}/users/${u.id}`)))).every((r) => r.status === 200),
      boundMs,
    );
    facts.convergenceMs.push(ms1);
    say('✓', `orders: projection has all ${created.length} users after ${ms1} ms (sidecar relay → RabbitMQ → orders inbox)`);

    // 2. An order keeps the email it was placed with; the projection follows the user.
    const ada = created[0];
    const first = await call('POST', `${orders.url}/orders`, { userId: ada.id, item: 'Difference Engine manual', amount: 42 });
    say('→', `orders: order ${first.id.slice(0, 8)} placed for Ada, confirmation to <${first.customer_email}>`);
    await call('PATCH', `${users.url}/users/${ada.id}`, { email: `countess.${run}@example.org` });
    const changed = await call('PATCH', `${users.url}/users/${ada.id}`, { email: `ada.lovelace.${run}@example.org` });
    say('→', `users: Ada changed her email twice (now <${changed.email}>, version ${changed.version})`);
    const ms2 = await waitUntil(
      'the projection of the email change',
      async () => (await call('GET', `${orders.url}/users/${ada.id}`)).version === changed.version,
      boundMs,
    );
    facts.convergenceMs.push(ms2);
    say('✓', `orders: projection shows <${changed.email}> (version ${changed.version}) after ${ms2} ms`);
    const second = await call('POST', `${orders.url}/orders`, { userId: ada.id, item: 'Analytical Engine notes', amount: 58 });
    const history = await call('GET', `${orders.url}/orders?userId=${ada.id}`);
    facts.history = history.map((o) => ({ id: o.id, emailAtOrder: o.emailAtOrder, currentEmail: o.currentEmail }));
    facts.historyKept = history.length === 2 && history[0].emailAtOrder === ada.email && history[1].emailAtOrder === changed.email && history.every((o) => o.currentEmail === changed.email);
    say(
      facts.historyKept ? '✓' : '✗',
      `orders: order ${first.id.slice(0, 8)} keeps <${history[0]?.emailAtOrder}> (as placed), order ${second.id.slice(0, 8)} has <${history[1]?.emailAtOrder}>; current email <${history[0]?.currentEmail}>`,
    );
    if (!facts.historyKept) throw new Error(`order history is not as documented: ${JSON.stringify(history)}`);

    // 3. The poison event: a buggy producer, a dead letter, the fix, the replay.
    const legacy = JSON.parse(await runScript(here('./src/legacy-import.mjs'), [`edsger.${run}@example.org`, 'Edsger Dijkstra'], { DATABASE_URL: usersDb, EXAMPLE_PREFIX: prefix }));
    say('→', `legacy CRM import (the buggy producer) created Edsger with user.created ${legacy.messageId.slice(0, 8)} carrying "emailAddress" instead of "email"`);
    const dlEnv = { MAILROOM_DATABASE_URL: ordersDb };
    let deadLetter;
    const ms3 = await waitUntil(
      'the dead letter of the malformed event',
      async () => {
        const res = await runMailroom(['dlq', 'list', '--pending', '--type', 'user.created', '--json'], dlEnv);
        deadLetter = JSON.parse(res.stdout).find((d) => d.messageId === legacy.messageId);
        return deadLetter !== undefined;
      },
      boundMs,
    );
    facts.deadLetter = { id: deadLetter.id, reason: deadLetter.reason, source: deadLetter.source };
    say('✗', `orders: refused it → dead letter #${deadLetter.id} (${deadLetter.reason}) after ${ms3} ms: ${deadLetter.error}`);
    say('•', '         `mailroom dlq list` shows it; the queue kept flowing, and Edsger is not in the projection');
    facts.poisonBlockedProjection = (await request('GET', `${orders.url}/users/${legacy.userId}`)).status === 404;

    const oldCode = await orders.stop();
    processes.splice(processes.indexOf(orders), 1);
    orders = await start('orders', here('./src/orders-service.mjs'), { DATABASE_URL: ordersDb, ORDERS_RELEASE: '1.1' });
    say('▶', `orders release 1.1 deployed (accepts the legacy shape); the old process drained and exited ${oldCode}`);
    const replay = await runMailroom(['dlq', 'replay', String(deadLetter.id)], dlEnv);
    if (replay.code !== 0) throw new Error(`mailroom dlq replay failed: ${replay.stderr}`);
    say('→', `$ mailroom dlq replay ${deadLetter.id}   → ${replay.stdout.trim()}`);
    const ms4 = await waitUntil(
      'the replayed event in the projection',
      async () => (await request('GET', `${orders.url}/users/${legacy.userId}`)).status === 200,
      boundMs,
    );
    facts.convergenceMs.push(ms4);
    const edsger = await call('GET', `${orders.url}/users/${legacy.userId}`);
    facts.replayed = edsger.email === `edsger.${run}@example.org`;
    say('✓', `orders: replayed user.created ${legacy.messageId.slice(0, 8)} (same message id) applied after ${ms4} ms: Edsger <${edsger.email}>`);

    // Replaying again is harmless: the inbox knows the message id.
    const again = await runMailroom(['dlq', 'replay', String(deadLetter.id)], dlEnv);
    if (again.code !== 0) throw new Error(`mailroom dlq replay failed: ${again.stderr}`);
    const ms5 = await waitUntil('the second replay to be found a duplicate', async () => (await call('GET', `${orders.url}/stats`)).consumer.duplicates >= 1, boundMs);
    say('✓', `$ mailroom dlq replay ${deadLetter.id} again → delivered after ${ms5} ms, found a duplicate by the inbox, nothing applied twice`);

    // One effect per event: every message id handled by the projection exactly once.
    const { rows } = await ordersPool.query(
      'SELECT message_id, count(*)::int AS n FROM projection_log WHERE user_id = ANY($1::uuid[]) GROUP BY message_id',
      [[...created.map((u) => u.id), legacy.userId]],
    );
    facts.events = rows.length;
    facts.maxEffectsPerEvent = Math.max(...rows.map((r) => r.n));
    const expected = created.length + 2 + 1;
    say(
      facts.events === expected && facts.maxEffectsPerEvent === 1 ? '✓' : '✗',
      `orders: ${facts.events} user events handled, each exactly once (expected ${expected})`,
    );
    if (facts.events !== expected || facts.maxEffectsPerEvent !== 1) throw new Error(`projection effects per event are wrong: ${JSON.stringify(rows)}`);

    // Graceful shutdown: the sidecar drains and exits 0 on SIGTERM.
    facts.exitCodes = {};
    for (const p of processes.splice(0).reverse()) facts.exitCodes[p.name] = await p.stop();
    say(Object.values(facts.exitCodes).every((c) => c === 0) ? '■' : '✗', `stopped users-relay, users, orders (exit codes ${JSON.stringify(facts.exitCodes)})`);
    return facts;
  } finally {
    for (const p of processes) await p.stop(2000);
    await ordersPool.end();
  }
}
