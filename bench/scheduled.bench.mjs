// Scheduled delivery (`enqueue(…, { deliverAt })`): COUNT (10,000) messages, each with its own
// due time spread uniformly over the next SECONDS (20) s and enqueued in random order (so new
// earliest rows keep re-arming the relay's timer), published through `mailroom relay` sidecars.
// A consumer in this process records each first arrival; lateness = arrival - due time (it
// includes the broker hop, so it bounds the publish lateness from above). Per run:
// - CANCEL_BEFORE (1,000) are cancelled with cancelScheduled well before their time, and
//   CANCEL_RACE (200) are cancelled at their due time (a cancel racing the relay's move: each
//   says true or false); the queue is consumed to the end and checked: a cancel that said true
//   never arrives, every other message arrives;
// - halfway through, a relay is killed with SIGKILL and started again at once.
// Variants, interleaved, in rotating order:
// - mailroom, two relays (the one killed is restarted; the other goes on), defaults;
// - mailroom, one relay killed and restarted: rows due while it is down wait for its start-up;
// - baseline: the naive way, due time in the outbox's available_at and a relay polling every
//   100 ms (bench/naive-relay.mjs's loop plus `WHERE available_at <= now()`), no restart.
// Then the claim cost with a MILLION rows scheduled for later (BENCH_SCHEDULED_CLAIM=0 skips it).
import { performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import pg from 'pg';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { cancelScheduled, enqueue } from '@mailroom/outbox';
import { amqpUrl, databaseUrl, fmt, freshSchema, loadAverage, machineBusy, median, newPool, quantile, report, tag } from './lib.mjs';

if (process.argv[2] === '--naive-scheduled-relay') await naiveScheduledRelay();

const COUNT = Number(process.env.BENCH_SCHEDULED_COUNT ?? 10_000);
const SECONDS = Number(process.env.BENCH_SCHEDULED_SECONDS ?? 20);
const RUNS = Number(process.env.BENCH_RUNS ?? 2);
const CANCEL_BEFORE = Math.floor(COUNT / 10);
const CANCEL_RACE = Math.floor(COUNT / 50);
const LEAD_MS = 6_000;
const CLAIM_ROWS = Number(process.env.BENCH_SCHEDULED_CLAIM_ROWS ?? 1_000_000);
const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const now = () => performance.timeOrigin + performance.now();

/**
 * The baseline relay as a process of its own: naive-relay.mjs's loop (claim ≤ 1000, publish,
 * wait for confirms, delete, commit, sleep 100 ms unless the batch was full) with the due filter
 * a team would add to make the outbox's available_at the due time.
 */
async function naiveScheduledRelay() {
  const schema = process.env.NAIVE_SCHEMA;
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const connection = await amqp.connect(amqpUrl);
  const channel = await connection.createConfirmChannel();
  let stopping = false;
  process.on('SIGTERM', () => (stopping = true));
  process.stdout.write('ready\n');
  while (!stopping) {
    await client.query('BEGIN');
    const { rows } = await client.query(
      `SELECT id, message_id, type, exchange, routing_key, headers, payload::text AS payload, extract(epoch FROM occurred_at)::bigint AS occurred
         FROM "${schema}".outbox WHERE available_at <= now() ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED`,
    );
    for (const row of rows) {
      const headers = Object.keys(row.headers).length > 0 ? row.headers : undefined;
      channel.publish(row.exchange, row.routing_key, Buffer.from(row.payload), {
        messageId: row.message_id,
        type: row.type,
        contentType: 'application/json',
        timestamp: Number(row.occurred),
        persistent: true,
        headers,
      });
    }
    if (rows.length > 0) {
      await channel.waitForConfirms();
      await client.query(`DELETE FROM "${schema}".outbox WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
    }
    await client.query('COMMIT');
    if (rows.length < 1000 && !stopping) await sleep(100);
  }
  await channel.close();
  await connection.close();
  await client.end();
  process.exit(0);
}

/** A process that prints a line when ready; kill(signal) resolves at its exit. */
async function startChild(args, env) {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code} before it was ready`)));
  });
  child.stdout.resume();
  return {
    kill: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
}

const mailroomRelay = (schema) =>
  startChild([CLI, 'relay'], { MAILROOM_DATABASE_URL: databaseUrl, MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema, MAILROOM_HTTP_PORT: '0', MAILROOM_LOG_LEVEL: 'warn' });
const naiveRelay = (schema) => startChild([fileURLToPath(import.meta.url), '--naive-scheduled-relay'], { NAIVE_SCHEMA: schema });

const pool = newPool(6);
const connection = await amqp.connect(amqpUrl, { noDelay: true });
const exchange = `bench.scheduled.${tag()}`;
const admin = await connection.createChannel();
await admin.assertExchange(exchange, 'topic', { durable: true });
const Event = defineMessage('bench.scheduled', z.object({ n: z.number() }), { exchange });
const loadAtStart = loadAverage();

function shuffle(list) {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

async function inTransaction(fn) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

/**
 * One run. `variant.store` enqueues one message due at `at` and `variant.cancel` takes one back
 * (both in a transaction); `variant.start(schema)` starts its relays and returns `restart()` and
 * `stop()`.
 */
async function lateRun(variant) {
  const { schema, drop } = await freshSchema(pool);
  const ch = await connection.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, exchange, '#');
  await ch.prefetch(1000);
  const arrivals = new Map();
  let deliveries = 0;
  await ch.consume(queue, (msg) => {
    if (!msg) return;
    deliveries++;
    const id = String(msg.properties.messageId);
    if (!arrivals.has(id)) arrivals.set(id, now());
    ch.ack(msg);
  });
  const relays = await variant.start(schema);

  const t0 = Date.now() + LEAD_MS;
  const messages = Array.from({ length: COUNT }, (_, n) => {
    const message = Event.create({ n });
    return { message, at: t0 + Math.floor((n / COUNT) * SECONDS * 1000) };
  });
  shuffle(messages);
  // 4 connections, 50 enqueue calls (each its own due time) per transaction.
  const enqueueStart = now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < messages.length) {
        const chunk = messages.slice(next, next + 50);
        next += 50;
        await inTransaction(async (c) => {
          for (const { message, at } of chunk) await variant.store(c, schema, message, new Date(at));
        });
      }
    }),
  );
  const enqueueMs = now() - enqueueStart;
  const committedAhead = t0 - Date.now();
  // Cancelled well before their time: the first CANCEL_BEFORE in shuffled order.
  const cancelled = new Set();
  const kept = new Set();
  for (let i = 0; i < CANCEL_BEFORE; i += 100) {
    await inTransaction(async (c) => {
      for (const { message } of messages.slice(i, Math.min(i + 100, CANCEL_BEFORE))) {
        if (await variant.cancel(c, schema, message.messageId)) cancelled.add(message.messageId);
        else kept.add(message.messageId);
      }
    });
  }
  // Cancels racing the relay at the due time.
  const racing = messages.slice(CANCEL_BEFORE, CANCEL_BEFORE + CANCEL_RACE);
  const raceDone = Promise.all(
    racing.map(async ({ message, at }) => {
      await sleep(Math.max(0, at - Date.now()));
      const removed = await inTransaction((c) => variant.cancel(c, schema, message.messageId));
      (removed ? cancelled : kept).add(message.messageId);
    }),
  );
  const busy = machineBusy();
  // Halfway: SIGKILL a relay, start it again at once.
  await sleep(Math.max(0, t0 + (SECONDS * 1000) / 2 - Date.now()));
  const killedAt = now();
  if (relays.restart) await relays.restart();
  const restartMs = now() - killedAt;
  await raceDone;
  // Consume to the end: every message not cancelled, then 2 s more for stragglers.
  const expected = messages.filter(({ message }) => !cancelled.has(message.messageId));
  const deadline = t0 + SECONDS * 1000 + 30_000;
  while (expected.some(({ message }) => !arrivals.has(message.messageId)) && Date.now() < deadline) await sleep(100);
  await sleep(2_000);
  const machine = busy();
  await relays.stop();
  await ch.close();
  await drop();

  const lateness = [];
  let early = 0;
  let lost = 0;
  for (const { message, at } of expected) {
    const arrived = arrivals.get(message.messageId);
    if (arrived === undefined) lost++;
    else {
      // 1 ms: `at` is whole ms, the comparison is the database's clock, this is the same clock read later.
      if (arrived < at - 1) early++;
      lateness.push(arrived - at);
    }
  }
  const leaked = [...cancelled].filter((id) => arrivals.has(id)).length;
  const within50 = lateness.filter((l) => l <= 50).length / Math.max(1, lateness.length);
  return {
    p50: quantile(lateness, 0.5),
    p99: quantile(lateness, 0.99),
    max: Math.max(...lateness),
    within50,
    early,
    lost,
    leaked,
    cancelled: cancelled.size,
    raceCancelled: racing.filter(({ message }) => cancelled.has(message.messageId)).length,
    duplicates: deliveries - arrivals.size,
    enqueueMs,
    committedAhead,
    restartMs,
    busy: machine,
  };
}

const mailroomStore = (c, schema, message, at) => enqueue(c, message, { schema, deliverAt: at });
const mailroomCancel = (c, schema, id) => cancelScheduled(c, id, { schema });
const variants = {
  'mailroom, 2 relays': {
    store: mailroomStore,
    cancel: mailroomCancel,
    async start(schema) {
      let a = await mailroomRelay(schema);
      const b = await mailroomRelay(schema);
      return {
        async restart() {
          await a.kill('SIGKILL');
          a = await mailroomRelay(schema);
        },
        stop: () => Promise.all([a.kill(), b.kill()]),
      };
    },
  },
  'mailroom, 1 relay': {
    store: mailroomStore,
    cancel: mailroomCancel,
    async start(schema) {
      let a = await mailroomRelay(schema);
      return {
        async restart() {
          await a.kill('SIGKILL');
          a = await mailroomRelay(schema);
        },
        stop: () => a.kill(),
      };
    },
  },
  'naive: available_at + 100 ms poll': {
    // The row goes straight into the outbox with its due time as available_at.
    async store(c, schema, message, at) {
      await c.query(
        `INSERT INTO "${schema}".outbox (message_id, type, exchange, routing_key, headers, payload, occurred_at, available_at) VALUES ($1, $2, $3, $4, '{}', $5, $6, $7)`,
        [message.messageId, message.type, message.exchange, message.routingKey, JSON.stringify(message.payload), message.occurredAt, at],
      );
    },
    async cancel(c, schema, id) {
      return (await c.query(`DELETE FROM "${schema}".outbox WHERE message_id = $1`, [id])).rowCount > 0;
    },
    async start(schema) {
      const a = await naiveRelay(schema);
      return { restart: undefined, stop: () => a.kill() };
    },
  },
};

const names = Object.keys(variants);
const results = Object.fromEntries(names.map((n) => [n, []]));
for (let run = 0; run < RUNS; run++) {
  for (let i = 0; i < names.length; i++) {
    const name = names[(i + run) % names.length];
    const result = await lateRun(variants[name]);
    results[name].push(result);
    process.stderr.write(`run ${run + 1}/${RUNS} ${name}: p50 ${fmt(result.p50, 1)} p99 ${fmt(result.p99, 1)} max ${fmt(result.max, 1)} ms, ${result.lost} lost, ${result.leaked} cancelled leaked, ${result.early} early\n`);
  }
}

// The claim with a million rows scheduled for later.
const claim = process.env.BENCH_SCHEDULED_CLAIM === '0' ? undefined : await claimCost();

await admin.deleteExchange(exchange);
await connection.close();
await pool.end();

const naive = results['naive: available_at + 100 ms poll'];
const rows = names.map((name) => {
  const runs = results[name];
  return {
    what: name,
    'p50 ms': fmt(median(runs.map((r) => r.p50)), 1),
    'p99 ms': fmt(median(runs.map((r) => r.p99)), 1),
    'max ms': fmt(median(runs.map((r) => r.max)), 1),
    'p99 per run': runs.map((r) => fmt(r.p99, 1)).join(' / '),
    'max per run': runs.map((r) => fmt(r.max, 0)).join(' / '),
    '<= 50 ms': runs.map((r) => `${fmt(r.within50 * 100, 2)} %`).join(' / '),
    'p99 x naive': fmt(median(runs.map((r, i) => r.p99 / naive[i].p99)), 2),
    early: runs.reduce((n, r) => n + r.early, 0),
    lost: runs.reduce((n, r) => n + r.lost, 0),
    'cancelled (race won)': runs.map((r) => `${r.cancelled} (${r.raceCancelled}/${CANCEL_RACE})`).join(' / '),
    'cancelled that left': runs.reduce((n, r) => n + r.leaked, 0),
    duplicates: runs.map((r) => r.duplicates).join(' / '),
    'restart ms': runs.map((r) => (name.startsWith('naive') ? '-' : fmt(r.restartMs, 0))).join(' / '),
    'machine busy': fmt(median(runs.map((r) => r.busy)), 3),
  };
});
const summary = {
  load: `${COUNT} messages due over ${SECONDS} s (uniform, enqueued in random order ${LEAD_MS / 1000} s ahead), ${CANCEL_BEFORE} cancelled before and ${CANCEL_RACE} at their due time, a relay SIGKILLed and restarted halfway (not the naive one), ${RUNS} runs interleaved, medians`,
  command: 'node bench/run.mjs scheduled',
  'enqueue of all messages, ms per run': Object.values(results)
    .flat()
    .map((r) => fmt(r.enqueueMs, 0))
    .join(' / '),
  'committed this far ahead of the first due time, ms (min)': fmt(Math.min(...Object.values(results).flat().map((r) => r.committedAhead)), 0),
  'load average at start': loadAtStart,
  'load average at end': loadAverage(),
  target: 'mailroom, 2 relays: p99 <= 50 ms, 0 early, 0 lost, 0 cancelled that left',
};
if (claim) Object.assign(summary, claim);
report('scheduled', rows, summary);

/**
 * The claim of due rows with CLAIM_ROWS rows scheduled for a day later: the relay's claim (500
 * due rows waiting) with and without the scheduled rows, against the same claim had those rows
 * been stored in the outbox with a future available_at (the design not taken); and the mover's
 * own statements (lock the due rows; the next due time) over them. Medians of 30, in ms.
 */
async function claimCost() {
  const { relaySql } = await import('../packages/outbox/dist/relay-sql.js');
  const { scheduledSql } = await import('../packages/outbox/dist/scheduled-mover.js');
  const c = await pool.connect();
  const timed = async (sql, n = 30) => {
    const times = [];
    for (let i = 0; i < n; i++) {
      await c.query('BEGIN');
      const t = now();
      await c.query(sql);
      times.push(now() - t);
      await c.query('ROLLBACK');
    }
    return median(times);
  };
  const withDue = async (schema) => {
    await c.query(
      `INSERT INTO "${schema}".outbox (message_id, type, exchange, routing_key, payload) SELECT gen_random_uuid(), 't', 'x', 'r', '{}' FROM generate_series(1, 500)`,
    );
  };
  const empty = await freshSchema(pool);
  await withDue(empty.schema);
  await c.query(`VACUUM ANALYZE "${empty.schema}".outbox`);
  const apart = await freshSchema(pool);
  let t = now();
  await c.query(
    `INSERT INTO "${apart.schema}".outbox_scheduled (message_id, type, exchange, routing_key, payload, deliver_at)
     SELECT gen_random_uuid(), 't', 'x', 'r', '{}', now() + interval '1 day' + g * interval '1 ms' FROM generate_series(1, ${CLAIM_ROWS}) g`,
  );
  const insertApartMs = now() - t;
  await withDue(apart.schema);
  await c.query(`VACUUM ANALYZE "${apart.schema}".outbox_scheduled`);
  await c.query(`VACUUM ANALYZE "${apart.schema}".outbox`);
  const inOutbox = await freshSchema(pool);
  t = now();
  await c.query(
    `INSERT INTO "${inOutbox.schema}".outbox (message_id, type, exchange, routing_key, payload, available_at)
     SELECT gen_random_uuid(), 't', 'x', 'r', '{}', now() + interval '1 day' FROM generate_series(1, ${CLAIM_ROWS})`,
  );
  await withDue(inOutbox.schema);
  await c.query(`VACUUM ANALYZE "${inOutbox.schema}".outbox`);
  const claimOf = (schema) => relaySql(schema).claim.replace('$1', '500');
  const result = {
    [`claim of 500 due rows, no scheduled rows (baseline), ms`]: fmt(await timed(claimOf(empty.schema)), 2),
    [`claim of 500 due rows, ${CLAIM_ROWS} scheduled for later in outbox_scheduled (this design), ms`]: fmt(await timed(claimOf(apart.schema)), 2),
    [`claim of 500 due rows, ${CLAIM_ROWS} in the outbox with a future available_at (not taken), ms`]: fmt(await timed(claimOf(inOutbox.schema), 5), 2),
    [`mover: lock due rows among ${CLAIM_ROWS} not due, ms`]: fmt(await timed(scheduledSql(apart.schema).lockDue.replace('$1', '500')), 3),
    [`mover: next due time among ${CLAIM_ROWS}, ms`]: fmt(await timed(scheduledSql(apart.schema).next), 3),
    [`insert of ${CLAIM_ROWS} scheduled rows (one statement), s`]: fmt(insertApartMs / 1000, 1),
  };
  // Moving 500 rows that fell due, among the million (one move statement, rolled back).
  await c.query(`UPDATE "${apart.schema}".outbox_scheduled SET deliver_at = now() - interval '1 s' WHERE id <= 500`);
  const { rows: due } = await c.query(`SELECT string_agg(id::text, ',') AS ids FROM "${apart.schema}".outbox_scheduled WHERE id <= 500`);
  result[`mover: move 500 due rows into the outbox among ${CLAIM_ROWS}, ms`] = fmt(await timed(scheduledSql(apart.schema).move.replace('$1', `'${due[0].ids}'`), 10), 2);
  c.release();
  for (const s of [empty, apart, inOutbox]) await s.drop();
  return result;
}
