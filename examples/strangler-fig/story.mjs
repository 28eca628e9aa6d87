// The strangler-fig story, as the demo tells it and the end-to-end test checks it: a monolith
// with users and orders in one database has its users part taken out into a service of its own,
// while traffic keeps coming. Starts the services as processes, flips the monolith's switches,
// runs the mailroom CLI, waits for each step to converge, and returns what it measured; throws
// when a step does not converge in time or a check fails.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { databaseUrlFor, dropDatabase, ensureDatabase } from '@mailroom/example-kit';
import { MAILROOM_CLI, brokerNames, call, request, runMailroom, startProcess, waitUntil } from '@mailroom/example-kit/orchestra';
import { SERVICES, monolithExchange } from './src/contracts.mjs';
import { formatReconciliation, reconcileUsers } from './src/reconcile.mjs';
import { diffProjections, perCountry, projectionRows } from './src/report-compare.mjs';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

/** Runs a Node script to completion: `{ code, stdout }` (a non-zero exit is a result, not an error). */
function runNode(script, args) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args], { timeout: 20_000 }, (error, stdout) =>
      error && typeof error.code !== 'number' ? reject(error) : resolve({ code: error ? error.code : 0, stdout: stdout.trim() }),
    );
  });
}

/** The broker names this story declares under `prefix` (for the clean-up). */
export const stranglerBrokerNames = (prefix) => brokerNames(prefix, Object.values(SERVICES), [monolithExchange(prefix)]);

const DEFAULT_DATABASES = {
  monolith: 'mailroom_demo_monolith',
  users: 'mailroom_demo_users_svc',
  mailer: 'mailroom_demo_mailer',
  reportingLive: 'mailroom_demo_reporting_live',
  reporting: 'mailroom_demo_reporting',
};

const PEOPLE = [
  ['Ada', 'Lovelace'], ['Grace', 'Hopper'], ['Alan', 'Turing'], ['Edsger', 'Dijkstra'], ['Barbara', 'Liskov'], ['Donald', 'Knuth'],
  ['Frances', 'Allen'], ['John', 'McCarthy'], ['Margaret', 'Hamilton'], ['Tony', 'Hoare'], ['Radia', 'Perlman'], ['Niklaus', 'Wirth'],
];
const COUNTRIES = ['DE', 'FR', 'GB', 'NL', 'SE', 'US'];
const pick = (list) => list[Math.floor(Math.random() * list.length)];

/**
 * Writes to the monolith in the background, as its users would: a new user, a change of country,
 * an order, in turn, every `intervalMs`. `form` says which sign-up form is live: `one-name` or
 * `split` (given and family name, from version 2 on). Any answer other than 2xx is counted.
 * `tag` makes its emails unique (two runs of traffic in one story must not pick the same address).
 */
function startTraffic(monolithUrl, users, tag, { intervalMs = 20 } = {}) {
  const state = { form: 'one-name', stopped: false, counts: { created: 0, updated: 0, orders: 0 }, errors: [] };
  let i = 0;
  const loop = (async () => {
    while (!state.stopped) {
      const step = i % 3;
      i += 1;
      try {
        if (step === 0) {
          const [given, family] = pick(PEOPLE);
          const email = `${given.toLowerCase()}.${tag}-${i}@example.org`;
          const body = state.form === 'split' ? { givenName: given, familyName: family, email, country: pick(COUNTRIES) } : { name: `${given} ${family}`, email, country: pick(COUNTRIES) };
          users.push((await call('POST', `${monolithUrl}/users`, body)).id);
          state.counts.created += 1;
        } else if (step === 1) {
          await call('PATCH', `${monolithUrl}/users/${pick(users)}`, { country: pick(COUNTRIES) });
          state.counts.updated += 1;
        } else {
          await call('POST', `${monolithUrl}/orders`, { userId: pick(users), amount: 5 + Math.floor(Math.random() * 95) });
          state.counts.orders += 1;
        }
      } catch (error) {
        state.errors.push(error.message);
      }
      await sleep(intervalMs);
    }
  })();
  return {
    state,
    /** Stops it after the request in flight; throws if any request failed. */
    async stop() {
      state.stopped = true;
      await loop;
      if (state.errors.length > 0) throw new Error(`traffic to the monolith failed ${state.errors.length} time(s): ${state.errors[0]}`);
      return state.counts;
    },
  };
}

/**
 * @param {object} o
 * @param {string} o.databaseUrl  any database on the server; the services get their own databases (recreated at each run)
 * @param {string} o.amqpUrl
 * @param {string} o.prefix       prefix of every exchange and queue of this run
 * @param {{monolith: string, users: string, mailer: string, reportingLive: string, reporting: string}} [o.databases]
 * @param {(icon: string, text: string) => void} [o.say]
 * @param {(name: string, line: string) => void} [o.onLine]  every line the processes print
 * @param {number} [o.boundMs]    how long each convergence may take
 * @param {boolean} [o.skipBackfill]  leave the users service's history replay out (to see the story fail without it)
 */
export async function stranglerStory({ databaseUrl, amqpUrl, prefix, databases = DEFAULT_DATABASES, say = () => {}, onLine, boundMs = 15_000, skipBackfill = false }) {
  const urls = Object.fromEntries(Object.entries(databases).map(([service, name]) => [service, databaseUrlFor(databaseUrl, name)]));
  // The story begins before the extraction: its databases start empty at every run.
  for (const name of Object.values(databases)) {
    await dropDatabase(databaseUrl, name);
    await ensureDatabase(databaseUrl, name);
  }
  say('•', `databases ${Object.values(databases).join(', ')} (recreated: the story starts before the extraction)`);
  const run = prefix.slice(-6);
  const facts = { boundMs, convergenceMs: [] };
  const processes = [];
  const start = async (name, script, env, args) => {
    const p = await startProcess(name, script, { env: { EXAMPLE_PREFIX: prefix, AMQP_URL: amqpUrl, ...env }, args, onLine });
    processes.push(p);
    return p;
  };
  const stop = async (p) => {
    processes.splice(processes.indexOf(p), 1);
    return p.stop();
  };
  const pools = Object.fromEntries(Object.entries(urls).map(([service, url]) => [service, new pg.Pool({ connectionString: url, max: 2 })]));
  for (const pool of Object.values(pools)) pool.on('error', () => undefined);
  const converged = async (what, check) => {
    const ms = await waitUntil(what, check, boundMs);
    facts.convergenceMs.push(ms);
    return ms;
  };
  let traffic;
  try {
    // Phase 0: the monolith and its past.
    const monolith = await start('monolith', here('./src/monolith.mjs'), { DATABASE_URL: urls.monolith });
    say('▶', `monolith on :${monolith.port}, database ${databases.monolith}: users and orders in one schema, no events`);
    const users = [];
    for (const [given, family] of PEOPLE) {
      const user = await call('POST', `${monolith.url}/users`, { name: `${given} ${family}`, email: `${given.toLowerCase()}.${run}@example.org`, country: pick(COUNTRIES) });
      users.push(user.id);
    }
    for (let i = 0; i < 2 * PEOPLE.length; i += 1) await call('POST', `${monolith.url}/orders`, { userId: users[i % users.length], amount: 10 + i });
    facts.past = { users: users.length, orders: 2 * PEOPLE.length };
    say('→', `phase 0, the past: ${facts.past.users} users and ${facts.past.orders} orders written by the monolith; no event exists for any of them`);

    // Phase 1: the outbox in the monolith's own transactions, the relay with the archive, the past as snapshots.
    const reportingLive = await start('reporting-live', here('./src/reporting-service.mjs'), { DATABASE_URL: urls.reportingLive, REPORTING_NAME: SERVICES.reportingLive });
    let mailer = await start('mailer', here('./src/mailer.mjs'), { DATABASE_URL: urls.mailer, MAILER_RELEASE: '1' });
    const relay = await start(
      'monolith-relay',
      MAILROOM_CLI,
      {
        MAILROOM_DATABASE_URL: urls.monolith,
        MAILROOM_AMQP_URL: amqpUrl,
        MAILROOM_ARCHIVE: 'true',
        MAILROOM_HTTP_HOST: '127.0.0.1',
        MAILROOM_HTTP_PORT: '0',
        MAILROOM_RELAY_NAME: 'monolith-relay',
        MAILROOM_LOG_LEVEL: 'warn',
      },
      ['relay'],
    );
    await waitUntil('the monolith relay sidecar ready', async () => (await request('GET', `${relay.url}/readyz`)).status === 200, boundMs);
    say('▶', `legacy mailer (release 1, knows user.created v1) and reporting-live subscribed; monolith relay \`mailroom relay\` with MAILROOM_ARCHIVE=true (pid ${relay.pid})`);
    await call('POST', `${monolith.url}/admin/flags`, { events: true });
    traffic = startTraffic(monolith.url, users, `${run}-a`);
    say('→', 'phase 1: the monolith\'s writes now enqueue user.created (v1) / user.updated / order.placed in their own transaction (outbox, not dual write); traffic running');
    // A sign-up the contract refuses is a 400 before anything is written: no row, no event.
    const badEmail = `bad.${run}@example.org`;
    const bad = await request('POST', `${monolith.url}/users`, { name: 'Bad Country', email: badEmail, country: 'Germany' });
    const { rows: badRows } = await pools.monolith.query(
      "SELECT (SELECT count(*) FROM users WHERE email = $1)::int + (SELECT count(*) FROM mailroom.outbox WHERE payload->>'email' = $1)::int + (SELECT count(*) FROM mailroom.outbox_archive WHERE payload->>'email' = $1)::int AS n",
      [badEmail],
    );
    facts.badSignUp = { status: bad.status, written: badRows[0].n };
    if (bad.status !== 400 || badRows[0].n !== 0) throw new Error(`a sign-up with country "Germany" was not refused cleanly: ${JSON.stringify(facts.badSignUp)}`);
    const snapshot = await call('POST', `${monolith.url}/admin/snapshot`, { batchSize: 10 });
    facts.snapshot = snapshot;
    say('→', `the past as events: ${snapshot.users} user.snapshot + ${snapshot.orders} order.snapshot (every row there now) in ${snapshot.batches} outbox transactions of 10, archived once published`);
    // The backfill replays the archive: wait until the relay has published (and so archived) every snapshot.
    await waitUntil(
      'the snapshots published and archived',
      async () => (await pools.monolith.query("SELECT count(*)::int AS n FROM mailroom.outbox WHERE type IN ('user.snapshot', 'order.snapshot')")).rows[0].n === 0,
      boundMs,
    );

    // Phase 2: the users service, backfilled by a history replay while live events arrive.
    const usersSvc = await start('users-svc', here('./src/users-service.mjs'), { DATABASE_URL: urls.users });
    const usersQueue = `${prefix}.${SERVICES.users}`;
    say('▶', `phase 2: users service on :${usersSvc.port}, database ${databases.users}, queue ${SERVICES.users} bound: live events flow from now on`);
    if (skipBackfill) {
      say('!', 'backfill skipped (skipBackfill): the users service has only what happened after it started');
    } else {
      // The archive holds the order events too, and a replay sends what it selects whatever the
      // queue is bound to: without --type the users service would dead-letter them (unknown-type).
      // One replay of the three types it handles keeps their outbox order across types.
      const types = ['user.snapshot', 'user.created', 'user.updated'];
      const replay = await runMailroom(['history', 'replay', '--queue', usersQueue, ...types.flatMap((t) => ['--type', t])], { MAILROOM_DATABASE_URL: urls.monolith, MAILROOM_AMQP_URL: amqpUrl });
      if (replay.code !== 0) throw new Error(`mailroom history replay failed: ${replay.stderr}`);
      const { published } = JSON.parse(replay.stdout);
      facts.usersReplay = { queue: usersQueue, published, types };
      say('→', `$ mailroom history replay --queue ${usersQueue} ${types.map((t) => `--type ${t}`).join(' ')}   → ${published} archived events, original ids, outbox order`);
    }
    const checkpoint = (await pools.monolith.query('SELECT id, version FROM users')).rows;
    const ms2 = await converged('the users service backfilled with every user of the monolith', async () => {
      const { rows } = await pools.users.query('SELECT id, version FROM users WHERE given_name IS NOT NULL');
      const have = new Map(rows.map((r) => [r.id, r.version]));
      return checkpoint.every((u) => (have.get(u.id) ?? 0) >= u.version);
    }).catch(async (error) => {
      // Say what the users service refused, if anything: a contract or upcaster mistake shows here.
      const { rows } = await pools.users.query('SELECT reason, count(*)::int AS n, min(error) AS error FROM mailroom.dead_letters GROUP BY reason');
      const { rows: have } = await pools.users.query('SELECT count(*)::int AS n FROM users WHERE given_name IS NOT NULL');
      throw new Error(`${error.message}; it has ${have[0].n} of ${checkpoint.length} users${rows.map((r) => `; ${r.n} dead letter(s) ${r.reason}: ${r.error}`).join('')}`);
    });
    const usersStats = (await call('GET', `${usersSvc.url}/stats`)).consumer;
    say('✓', `users service has all ${checkpoint.length} users of the monolith after ${ms2} ms, and follows live events (inbox: ${usersStats.handled} handled, ${usersStats.duplicates} duplicate(s) of replay and live dropped)`);

    // Phase 3: user.created version 2 while the legacy mailer knows only version 1.
    await call('POST', `${monolith.url}/admin/flags`, { userCreatedVersion: 2 });
    traffic.state.form = 'split';
    const mary = await call('POST', `${monolith.url}/users`, { givenName: 'Mary Ann', familyName: 'Evans', email: `mary.ann.evans.${run}@example.org`, country: 'GB' });
    users.push(mary.id);
    facts.mary = mary.id;
    say('→', 'phase 3: the monolith produces user.created v2 {givenName, familyName}; signed up: Mary Ann / Evans. The legacy mailer still runs release 1');
    const mailerEnv = { MAILROOM_DATABASE_URL: urls.mailer };
    let maryLetter;
    await converged('the legacy mailer dead-lettering user.created v2', async () => {
      const { rows } = await pools.mailer.query("SELECT id, reason, error FROM mailroom.dead_letters WHERE payload->>'userId' = $1", [mary.id]);
      maryLetter = rows[0];
      return maryLetter !== undefined;
    });
    say('✗', `mailer release 1: Mary's user.created v2 → dead letter #${maryLetter.id} ${maryLetter.reason}: ${maryLetter.error}`);
    await converged('the users service storing a v2 user as sent', async () => (await request('GET', `${usersSvc.url}/users/${mary.id}`)).status === 200);
    const maryThere = await call('GET', `${usersSvc.url}/users/${mary.id}`);
    say('✓', `users service (knows v1 and v2): Mary stored as "${maryThere.givenName}" / "${maryThere.familyName}"; v1 events are upcast (name split at its first space)`);
    const oldMailer = await stop(mailer);
    mailer = await start('mailer', here('./src/mailer.mjs'), { DATABASE_URL: urls.mailer, MAILER_RELEASE: '2' });
    say('▶', `mailer release 2 deployed (knows v2); release 1 drained and exited ${oldMailer}`);
    const replayDeadLetters = async () => {
      const listed = await runMailroom(['dlq', 'list', '--pending', '--json'], mailerEnv);
      if (listed.code !== 0) throw new Error(`mailroom dlq list failed: ${listed.stderr}`);
      const pending = JSON.parse(listed.stdout);
      if (pending.length === 0) return { pending, stdout: '' };
      const replayed = await runMailroom(['dlq', 'replay', ...pending.map((d) => String(d.id))], mailerEnv);
      if (replayed.code !== 0) throw new Error(`mailroom dlq replay failed: ${replayed.stderr}`);
      return { pending, stdout: replayed.stdout.trim() };
    };
    const first = await replayDeadLetters();
    say('→', `$ mailroom dlq replay ${first.pending.map((d) => d.id).join(' ')}   → ${first.stdout.split(':')[0]} (${first.pending.filter((d) => d.reason === 'unknown-version').length} unknown-version)`);
    const ms3 = await converged('the replayed v2 messages applied by the mailer', async () => {
      // Dead letters release 1 left on the queue while it stopped reach the store later: replay those too.
      if ((await replayDeadLetters()).pending.length > 0) return false;
      const { rows } = await pools.mailer.query('SELECT 1 FROM welcome_mails WHERE user_id = $1', [mary.id]);
      return rows.length === 1;
    });
    const { rows: mailerLetters } = await pools.mailer.query('SELECT count(*)::int AS n FROM mailroom.dead_letters');
    say('✓', `mailer: the ${mailerLetters[0].n} replayed v2 message(s) applied after ${ms3} ms (same ids; the other consumers found them duplicates): "Dear Mary Ann"`);

    // Phase 4: reads switch to the users service.
    const before = await call('GET', `${monolith.url}/users/${mary.id}`);
    await call('POST', `${monolith.url}/admin/flags`, { usersServiceUrl: usersSvc.url });
    const after = await call('GET', `${monolith.url}/users/${mary.id}`);
    const reads = await call('GET', `${monolith.url}/stats`);
    facts.readSwitch = { before, after, reads: reads.reads };
    facts.readsSwitched = before.servedBy === 'monolith' && after.servedBy === 'users-service' && after.givenName === 'Mary Ann' && after.familyName === 'Evans';
    say(
      facts.readsSwitched ? '✓' : '✗',
      `phase 4, reads switched: GET /users/${mary.id.slice(0, 8)} on the monolith → served by the users service: "${after.givenName}" / "${after.familyName}" (the monolith's table has "${before.name}" only)`,
    );
    if (!facts.readsSwitched) throw new Error(`the read did not switch: ${JSON.stringify(facts.readSwitch)}`);

    // Phase 5: reconciliation, with a difference made behind the write path's back, then healed.
    facts.trafficBeforeReconcile = await traffic.stop();
    traffic = undefined;
    const drifted = users[3];
    await pools.monolith.query("UPDATE users SET email = 'hotfix.' || email WHERE id = $1", [drifted]);
    say('→', `phase 5: traffic stopped; a support engineer fixes user ${drifted.slice(0, 8)}'s email with SQL in the monolith's database (no event)`);
    let found;
    await converged('the reconciliation finding exactly the hotfix', async () => {
      found = await reconcileUsers(pools.monolith, pools.users);
      return found.differences.length === 1 && found.differences[0].id === drifted && found.differences[0].field === 'email';
    });
    facts.reconcileBefore = found;
    for (const line of formatReconciliation(found)) say('✗', `reconcile: ${line}`);
    await call('POST', `${monolith.url}/admin/resync/${drifted}`);
    say('→', `the monolith re-emits user ${drifted.slice(0, 8)} (user.updated, version + 1) through the outbox`);
    await converged('the reconciliation finding nothing', async () => (await reconcileUsers(pools.monolith, pools.users)).differences.length === 0);
    const reconcile = await runNode(here('./src/reconcile.mjs'), [urls.monolith, urls.users]);
    facts.reconcileAfter = { code: reconcile.code, output: reconcile.stdout };
    say(reconcile.code === 0 ? '✓' : '✗', `$ node src/reconcile.mjs   → ${reconcile.stdout} (exit ${reconcile.code})`);
    if (reconcile.code !== 0) throw new Error(`the reconciliation found differences:\n${reconcile.stdout}`);

    // Phase 6: the reporting service joins last, rebuilds from history while live events arrive.
    const reporting = await start('reporting', here('./src/reporting-service.mjs'), { DATABASE_URL: urls.reporting, REPORTING_NAME: SERVICES.reporting });
    const reportingQueue = `${prefix}.${SERVICES.reporting}`;
    say('▶', `phase 6: reporting joins last (queue ${SERVICES.reporting}, database ${databases.reporting}); traffic resumes`);
    traffic = startTraffic(monolith.url, users, `${run}-b`);
    traffic.state.form = 'split';
    const duringStart = { ...traffic.state.counts };
    const replay2 = await runMailroom(['history', 'replay', '--queue', reportingQueue, '--rate', '500'], { MAILROOM_DATABASE_URL: urls.monolith, MAILROOM_AMQP_URL: amqpUrl });
    if (replay2.code !== 0) throw new Error(`mailroom history replay failed: ${replay2.stderr}`);
    facts.reportingReplay = JSON.parse(replay2.stdout);
    const duringEnd = traffic.state.counts;
    facts.liveDuringReplay = duringEnd.created + duringEnd.updated + duringEnd.orders - (duringStart.created + duringStart.updated + duringStart.orders);
    say('→', `$ mailroom history replay --queue ${reportingQueue} --rate 500   → ${facts.reportingReplay.published} events, while ${facts.liveDuringReplay} live writes went on`);
    facts.trafficDuringReporting = await traffic.stop();
    traffic = undefined;
    let rebuilt;
    let live;
    let truth;
    const ms6 = await converged('the rebuilt reporting projection matching the live one and the monolith', async () => {
      [rebuilt, live, truth] = await Promise.all([projectionRows(pools.reporting), projectionRows(pools.reportingLive), projectionRows(pools.monolith, { monolith: true })]);
      return diffProjections(rebuilt, live).length === 0 && diffProjections(live, truth).length === 0;
    });
    facts.projection = { rows: rebuilt.length, orders: rebuilt.reduce((n, r) => n + r.orders, 0), matchesLive: true, matchesMonolith: true, perCountry: perCountry(rebuilt) };
    say(
      '✓',
      `reporting rebuilt from history = reporting-live, row for row, after ${ms6} ms: ${facts.projection.rows} users, ${facts.projection.orders} orders; users per country ${Object.entries(facts.projection.perCountry).map(([c, n]) => `${c} ${n}`).join(', ')} (= the monolith's own tables)`,
    );

    // Every welcome mail once, for every user.created (v1 and v2) and no snapshot; no message handled twice anywhere.
    // A consumer may handle an event before the relay's archive commit lands: count once the outbox is empty.
    let created;
    await converged('the mailer welcoming every created user', async () => {
      const [{ rows: pending }, { rows: archived }, { rows: welcomed }] = await Promise.all([
        pools.monolith.query('SELECT count(*)::int AS n FROM mailroom.outbox'),
        pools.monolith.query("SELECT count(*)::int AS n FROM mailroom.outbox_archive WHERE type = 'user.created'"),
        pools.mailer.query('SELECT count(*)::int AS n FROM welcome_mails'),
      ]);
      created = archived;
      return pending[0].n === 0 && welcomed[0].n === archived[0].n;
    });
    facts.handledTwice = {};
    facts.handled = {};
    for (const service of ['users', 'mailer', 'reportingLive', 'reporting']) {
      const { rows } = await pools[service].query(
        'SELECT count(*)::int AS messages, count(*) FILTER (WHERE n > 1)::int AS twice FROM (SELECT message_id, count(*) AS n FROM handled_log GROUP BY message_id) m',
      );
      facts.handled[service] = rows[0].messages;
      facts.handledTwice[service] = rows[0].twice;
    }
    // Nothing the services could not handle: no dead letters but the mailer's v2 ones (replayed above).
    facts.deadLetters = {};
    for (const service of ['users', 'reportingLive', 'reporting']) {
      const { rows } = await pools[service].query('SELECT count(*)::int AS n FROM mailroom.dead_letters');
      facts.deadLetters[service] = rows[0].n;
    }
    if (Object.values(facts.deadLetters).some((n) => n > 0)) throw new Error(`dead letters where none belong: ${JSON.stringify(facts.deadLetters)}`);
    const once = Object.values(facts.handledTwice).every((n) => n === 0);
    say(once ? '✓' : '✗', `no message handled twice: ${Object.entries(facts.handled).map(([s, n]) => `${s} ${n}`).join(', ')} messages, each once; the mailer welcomed all ${created[0].n} created users, no snapshot`);
    if (!once) throw new Error(`a message was handled twice: ${JSON.stringify(facts.handledTwice)}`);

    facts.exitCodes = {};
    for (const p of processes.splice(0).reverse()) facts.exitCodes[p.name] = await p.stop();
    say(Object.values(facts.exitCodes).every((c) => c === 0) ? '■' : '✗', `stopped ${Object.keys(facts.exitCodes).join(', ')} (exit codes ${JSON.stringify(facts.exitCodes)})`);
    return facts;
  } finally {
    if (traffic) await traffic.stop().catch(() => undefined);
    for (const p of processes) await p.stop(2000);
    await Promise.all(Object.values(pools).map((pool) => pool.end()));
  }
}
