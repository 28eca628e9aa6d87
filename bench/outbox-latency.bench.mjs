// Latency: producers commit 200 events/s for 20 s, each in its own transaction; the relay runs as
// its own process (`mailroom relay`, woken by NOTIFY); a consumer in this process records when
// each event arrives. Reports commit-to-consumer p50 / p99 / max and the events that never
// arrived. Baselines in the same run: publish-to-consumer latency of raw amqplib confirmed
// publishing at the same rate, which no relay can beat; the naive relay (bench/naive-relay.mjs, a
// process polling every 100 ms) on the same workload; and the machine with nothing of the bench
// running (the floor of a shared machine). For each relay run the whole machine's busy fraction
// (every process: bench, PostgreSQL, RabbitMQ, relay) is measured; goal 3 compares mailroom's
// with the naive relay's (ratio per run). A second naive baseline polls every 1 ms
// (BENCH_LATENCY_PROMPT_POLL_MS): the naive relay made as prompt as mailroom, so that the busy
// fraction can also be compared at equal latency. And mailroom with MAILROOM_LINGER_MS
// (BENCH_LATENCY_LINGER_MS, default 20): latency traded for fewer batches. And a lower bound
// (bench/notify-relay.mjs): a process that publishes each row straight from a NOTIFY carrying it
// and deletes in batches, asking PostgreSQL nothing per event; unsafe (see that file), it shows
// what any relay that publishes each event at its commit costs at least. BENCH_LATENCY_BOUND=0
// leaves it out. Runs are interleaved, in a rotating order.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { amqpUrl, databaseUrl, fmt, freshSchema, loadAverage, machineBusy, median, newPool, quantile, report, startNaiveRelay, startNotifyRelay, tag } from './lib.mjs';

const RATE = Number(process.env.BENCH_LATENCY_RATE ?? 200);
const SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 20);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const now = () => Number(process.hrtime.bigint()) / 1e6;

const LINGER_MS = Number(process.env.BENCH_LATENCY_LINGER_MS ?? 20);
const PROMPT_POLL_MS = Number(process.env.BENCH_LATENCY_PROMPT_POLL_MS ?? 1);
const FLOOR_SECONDS = Number(process.env.BENCH_LATENCY_FLOOR_SECONDS ?? 5);
const BOUND = process.env.BENCH_LATENCY_BOUND !== '0';
const loadAtStart = loadAverage();
const pool = newPool(4);
const connection = await amqp.connect(amqpUrl, { noDelay: true });
const exchange = `bench.latency.${tag()}`;
const admin = await connection.createChannel();
await admin.assertExchange(exchange, 'topic', { durable: true });
const Event = defineMessage('bench.tick', z.object({ n: z.number() }), { exchange });

async function consumer(onMessage) {
  const ch = await connection.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, exchange, '#');
  await ch.prefetch(1000);
  await ch.consume(queue, (msg) => {
    if (!msg) return;
    onMessage(String(msg.properties.messageId), now());
    ch.ack(msg);
  });
  return () => ch.close();
}

/** Calls `fn(i)` RATE times a second for SECONDS, on schedule (no drift); returns when done. */
async function paced(fn) {
  const total = RATE * SECONDS;
  const interval = 1000 / RATE;
  const start = now();
  const pending = [];
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(fn(i));
  }
  await Promise.all(pending);
}

async function collect(sent, arrived) {
  const deadline = now() + 5000;
  const allArrived = () => [...sent.keys()].every((id) => arrived.has(id));
  while (!allArrived() && now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const latencies = [];
  let lost = 0;
  let early = 0;
  for (const [id, t] of sent) {
    const a = arrived.get(id);
    if (a === undefined) lost++;
    else {
      if (a < t) early++;
      latencies.push(Math.max(0, a - t));
    }
  }
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), max: Math.max(...latencies), lost, early, count: sent.size };
}

/** Starts mailroom's relay sidecar on `schema`; resolves when it is ready. */
async function mailroomRelay(schema, extraEnv = {}) {
  const relay = spawn(process.execPath, [CLI, 'relay'], {
    env: { ...process.env, ...extraEnv, MAILROOM_DATABASE_URL: databaseUrl, MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema, MAILROOM_HTTP_PORT: '0', MAILROOM_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve) => relay.stdout.once('data', resolve));
  relay.stdout.resume();
  return {
    stop: () => {
      relay.kill('SIGTERM');
      return new Promise((r) => relay.once('exit', r));
    },
  };
}

async function relayRun(start) {
  const { schema, drop } = await freshSchema(pool);
  const relay = await start(schema);
  const sent = new Map();
  const arrived = new Map();
  const stop = await consumer((id, t) => arrived.has(id) || arrived.set(id, t));
  // Warm up the path (exchange check, channel, JIT) before measuring.
  await commitOne(schema, null, 0);
  await new Promise((r) => setTimeout(r, 500));
  const clients = await Promise.all(Array.from({ length: 4 }, () => pool.connect()));
  const busy = machineBusy();
  await paced(async (i) => {
    const client = clients[i % clients.length];
    await commitOne(schema, client, i, sent);
  });
  const result = await collect(sent, arrived);
  result.busy = busy();
  for (const c of clients) c.release();
  if (result.lost > 0) {
    const missing = [...sent.keys()].filter((id) => !arrived.has(id));
    const rows = await pool.query(`SELECT message_id, attempts, last_error, available_at, created_at FROM "${schema}".outbox WHERE message_id = ANY($1::uuid[])`, [missing]);
    process.stderr.write(`never arrived: ${JSON.stringify(missing)}; still in the outbox: ${JSON.stringify(rows.rows)}\n`);
  }
  await stop();
  await relay.stop();
  await drop();
  return result;
}

const queues = new Map();
async function commitOne(schema, client, n, sent) {
  const own = client ?? (await pool.connect());
  // One client is used by one transaction at a time.
  const previous = queues.get(own) ?? Promise.resolve();
  const mine = previous.then(async () => {
    const event = Event.create({ n });
    await own.query('BEGIN');
    await enqueue(own, event, { schema });
    await own.query('COMMIT');
    sent?.set(event.messageId, now());
  });
  queues.set(own, mine.catch(() => undefined));
  await mine;
  if (!client) own.release();
}

async function rawRun() {
  const ch = await connection.createConfirmChannel();
  const sent = new Map();
  const arrived = new Map();
  const stop = await consumer((id, t) => arrived.has(id) || arrived.set(id, t));
  await paced(async (i) => {
    const id = `${i}-${tag()}`;
    sent.set(id, now());
    await new Promise((resolve, reject) =>
      ch.publish(exchange, 'bench.tick', Buffer.from(JSON.stringify({ n: i })), { messageId: id, persistent: true, mandatory: true }, (e) => (e ? reject(e) : resolve())),
    );
  });
  const result = await collect(sent, arrived);
  await stop();
  await ch.close();
  return result;
}

/** The machine with nothing of the bench running: the floor of a shared machine. */
async function floorRun() {
  const busy = machineBusy();
  await new Promise((r) => setTimeout(r, FLOOR_SECONDS * 1000));
  return { busy: busy() };
}

const results = { raw: [], mailroom: [], linger: [], naive: [], prompt: [], bound: [], floor: [] };
const kinds = {
  raw: rawRun,
  mailroom: () => relayRun(mailroomRelay),
  linger: () => relayRun((schema) => mailroomRelay(schema, { MAILROOM_LINGER_MS: String(LINGER_MS) })),
  naive: () => relayRun((schema) => startNaiveRelay(schema)),
  prompt: () => relayRun((schema) => startNaiveRelay(schema, { NAIVE_POLL_MS: String(PROMPT_POLL_MS) })),
  bound: () => relayRun((schema) => startNotifyRelay(pool, schema)),
  floor: floorRun,
};
const names = Object.keys(kinds).filter((name) => BOUND || name !== 'bound');
for (let run = 0; run < RUNS; run++) {
  for (let i = 0; i < names.length; i++) {
    const name = names[(i + run) % names.length];
    results[name].push(await kinds[name]());
  }
  process.stderr.write(`run ${run + 1}/${RUNS} done\n`);
}
const raws = results.raw;
const relays = results.mailroom;
await admin.deleteExchange(exchange);
await connection.close();
await pool.end();

const row = (what, runs) => ({
  what,
  'p50 ms': fmt(median(runs.map((r) => r.p50)), 2),
  'p99 ms': fmt(median(runs.map((r) => r.p99)), 2),
  'max ms': fmt(median(runs.map((r) => r.max)), 1),
  'p50 per run': runs.map((r) => fmt(r.p50, 2)).join(' / '),
  'p99 per run': runs.map((r) => fmt(r.p99, 2)).join(' / '),
  'never arrived': runs.reduce((n, r) => n + r.lost, 0),
});
const busyRatios = relays.map((r, i) => r.busy / results.naive[i].busy);
const promptRatios = relays.map((r, i) => r.busy / results.prompt[i].busy);
const boundRatios = results.bound.map((r, i) => r.busy / results.naive[i].busy);
const lingerRatios = results.linger.map((r, i) => r.busy / results.naive[i].busy);
const busyRow = (what, runs) => ({
  what,
  'p50 ms': '',
  'p99 ms': '',
  'max ms': '',
  'p50 per run': '',
  'p99 per run': '',
  'never arrived': '',
  'machine busy': fmt(median(runs.map((r) => r.busy)), 3),
  'busy per run': runs.map((r) => fmt(r.busy, 3)).join(' / '),
});
const withBusy = (r, runs) => ({ ...r, 'machine busy': runs[0]?.busy === undefined ? '' : fmt(median(runs.map((x) => x.busy)), 3), 'busy per run': runs[0]?.busy === undefined ? '' : runs.map((x) => fmt(x.busy, 3)).join(' / ') });
report(
  'outbox-latency',
  [
    withBusy(row('raw amqplib publish -> consumer (baseline)', raws), []),
    withBusy(row('commit -> mailroom relay (sidecar) -> consumer', relays), relays),
    withBusy(row(`commit -> mailroom relay, MAILROOM_LINGER_MS=${LINGER_MS} -> consumer`, results.linger), results.linger),
    withBusy(row('commit -> naive relay (100 ms poll) -> consumer', results.naive), results.naive),
    withBusy(row(`commit -> naive relay (${PROMPT_POLL_MS} ms poll) -> consumer`, results.prompt), results.prompt),
    ...(BOUND ? [withBusy(row('commit -> lower bound: row in the NOTIFY, no query per event (unsafe, bench only) -> consumer', results.bound), results.bound)] : []),
    busyRow('machine, nothing of the bench running (floor)', results.floor),
  ],
  {
    load: `${RATE} events/s for ${SECONDS} s, one transaction per event, ${RUNS} runs interleaved, medians`,
    command: 'node bench/run.mjs outbox-latency',
    'events that never arrived': relays.reduce((n, r) => n + r.lost, 0),
    'machine busy, mailroom / naive relay, per run': busyRatios.map((r) => fmt(r, 2)).join(' / '),
    'machine busy, mailroom / naive relay, median': fmt(median(busyRatios), 2),
    [`machine busy, mailroom with MAILROOM_LINGER_MS=${LINGER_MS} / naive relay, per run`]: lingerRatios.map((r) => fmt(r, 2)).join(' / '),
    [`machine busy, mailroom with MAILROOM_LINGER_MS=${LINGER_MS} / naive relay, median`]: fmt(median(lingerRatios), 2),
    [`machine busy, mailroom / naive relay polling every ${PROMPT_POLL_MS} ms, per run`]: promptRatios.map((r) => fmt(r, 2)).join(' / '),
    [`machine busy, mailroom / naive relay polling every ${PROMPT_POLL_MS} ms, median`]: fmt(median(promptRatios), 2),
    ...(BOUND
      ? {
          'machine busy, lower bound (row in the NOTIFY) / naive relay, per run': boundRatios.map((r) => fmt(r, 2)).join(' / '),
          'machine busy, lower bound (row in the NOTIFY) / naive relay, median': fmt(median(boundRatios), 2),
        }
      : {}),
    'load average at start': loadAtStart,
    'load average at end': loadAverage(),
    targets: 'mailroom p50 <= 1.5 ms, p99 <= 5 ms, 0 never arrived; machine busy <= 1.5 x naive relay',
  },
);
