// Drain: COUNT (20,000) preloaded 1 KiB events, published by the mailroom relay running as the
// sidecar process (`node packages/cli/dist/main.js relay`), against, in the same run:
// - raw amqplib confirmed publishing of the same bodies (one confirm channel, a sliding window of
//   1000 unconfirmed publishes, persistent, mandatory, message id / type / content type, NO headers),
// - the naive relay (bench/naive-relay.mjs), a process of its own like the sidecar.
// Each relay drains a fresh schema; the end is the outbox's last row gone (polled). Per-run ratios
// against the raw rate of the same run, medians. Per relay process (from /proc): CPU per message
// with and without start-up (CPU at its ready line subtracted), start-up CPU, peak RSS.
// The raw baseline is sampled twice per run (first and last), the run's baseline their mean.
// A header-cost table: raw publishing with no headers, with each header mailroom writes(/wrote)
// alone, and with the AMQP property used instead. Then one run at BENCH_DRAIN_BIG_COUNT (100,000)
// for each relay, for peak RSS at a large backlog. BENCH_DRAIN_ALSO_ENV (JSON) adds a second
// mailroom relay to every run with that extra environment, e.g. '{"MAILROOM_BATCH_SIZE":"500",
// "MAILROOM_CONCURRENCY":"3"}' (the defaults before 2026-12-02), to compare settings in one run.
// The relays of a run go in a rotating order.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import {
  amqpUrl,
  databaseUrl,
  fmt,
  freshSchema,
  loadAverage,
  median,
  newPool,
  processCpuSeconds,
  processMemoryMb,
  report,
  startNaiveRelay,
  startProcess,
  tag,
} from './lib.mjs';

const COUNT = Number(process.env.BENCH_DRAIN_COUNT ?? 20_000);
const BIG_COUNT = Number(process.env.BENCH_DRAIN_BIG_COUNT ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const WINDOW = 1000;
const POLL_MS = 20;
const PAYLOAD = { pad: 'x'.repeat(1024 - 20), n: 0 };
// Extra environment of the sidecar (JSON), e.g. '{"MAILROOM_BATCH_SIZE":"1000"}'.
const RELAY_ENV = JSON.parse(process.env.BENCH_DRAIN_RELAY_ENV ?? '{}');
const ALSO_ENV = process.env.BENCH_DRAIN_ALSO_ENV ? JSON.parse(process.env.BENCH_DRAIN_ALSO_ENV) : undefined;
const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const loadAtStart = loadAverage();

const pool = newPool(6);
const connection = await amqp.connect(amqpUrl);
const admin = await connection.createChannel();
const exchange = `bench.drain.${tag()}`;
const queue = `${exchange}.q`;
await admin.assertExchange(exchange, 'topic', { durable: true });
await admin.assertQueue(queue, { durable: true });
await admin.bindQueue(queue, exchange, '#');
const Event = defineMessage('bench.event', z.object({ pad: z.string(), n: z.number() }), { exchange });

/** Preloads `count` events: 1000 through enqueue, the rest copied from them in SQL (new ids). */
async function preload(schema, count) {
  const client = await pool.connect();
  try {
    const first = Math.min(1000, count);
    await client.query('BEGIN');
    await enqueue(client, Array.from({ length: first }, (_, n) => Event.create({ ...PAYLOAD, n })), { schema });
    await client.query('COMMIT');
    for (let done = first; done < count; ) {
      const n = Math.min(count - done, 20_000);
      await client.query(
        `INSERT INTO "${schema}".outbox (message_id, type, exchange, routing_key, key, headers, payload, occurred_at)
         SELECT gen_random_uuid(), o.type, o.exchange, o.routing_key, o.key, o.headers, o.payload, o.occurred_at
           FROM (SELECT * FROM "${schema}".outbox ORDER BY id LIMIT $1) o, generate_series(1, $2) g ORDER BY g, o.id LIMIT $3`,
        [first, Math.ceil(n / first), n],
      );
      done += n;
    }
  } finally {
    client.release();
  }
  await pool.query(`VACUUM ANALYZE "${schema}".outbox`);
}

const remaining = async (schema) => Number((await pool.query(`SELECT count(*) AS n FROM "${schema}".outbox`)).rows[0].n);

/**
 * Drains a freshly preloaded schema with a relay process started by `start(schema)`. The rate is
 * measured from the first commit seen (the outbox count below `count`) to the last row gone, over
 * the rows left at that first sight, so neither relay's connect time nor its first batch counts.
 */
async function drainWith(start, count) {
  const { schema, drop } = await freshSchema(pool);
  await preload(schema, count);
  await admin.purgeQueue(queue);
  const relay = await start(schema);
  const cpuAtReady = processCpuSeconds(relay.pid);
  let firstSeen;
  let left = count;
  let memory = processMemoryMb(relay.pid);
  let ended;
  const deadline = Date.now() + 120_000 * Math.max(1, count / 20_000);
  for (;;) {
    const asked = process.hrtime.bigint();
    left = await remaining(schema);
    memory = processMemoryMb(relay.pid);
    if (firstSeen === undefined && left < count) firstSeen = { at: asked, left };
    if (left === 0) {
      ended = process.hrtime.bigint();
      break;
    }
    if (Date.now() > deadline) throw new Error(`the relay left ${left} rows in the outbox`);
    await sleep(POLL_MS);
  }
  const cpuAtEnd = processCpuSeconds(relay.pid);
  await relay.stop();
  await drop();
  const seconds = Number(ended - firstSeen.at) / 1e9;
  return {
    rate: firstSeen.left / seconds,
    seconds,
    cpuUsPerMessage: ((cpuAtEnd - cpuAtReady) / count) * 1e6,
    cpuUsPerMessageWithStart: (cpuAtEnd / count) * 1e6,
    startCpuSeconds: cpuAtReady,
    peakRssMb: memory.peak,
  };
}

const startMailroom = (schema, extra = {}) =>
  startProcess(CLI, ['relay'], {
    MAILROOM_DATABASE_URL: databaseUrl,
    MAILROOM_AMQP_URL: amqpUrl,
    MAILROOM_SCHEMA: schema,
    MAILROOM_HTTP_PORT: '0',
    MAILROOM_LOG_LEVEL: 'warn',
    ...RELAY_ENV,
    ...extra,
  });
const startNaive = (schema) => startNaiveRelay(schema);

// The first body exactly as the relay sends it (jsonb's text form).
const bodySchema = await freshSchema(pool);
await preload(bodySchema.schema, 1);
const BODY = Buffer.from((await pool.query(`SELECT payload::text AS p FROM "${bodySchema.schema}".outbox`)).rows[0].p);
await bodySchema.drop();

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const variants = [
  { name: 'no headers (baseline)', extra: () => ({}) },
  { name: 'x-mailroom-occurred-at header alone', extra: () => ({ headers: { 'x-mailroom-occurred-at': new Date().toISOString() } }) },
  { name: 'x-mailroom-key header alone', extra: () => ({ headers: { 'x-mailroom-key': 'customer-42' } }) },
  { name: 'traceparent header alone', extra: () => ({ headers: { traceparent: TRACEPARENT } }) },
  { name: 'timestamp property (instead of occurred-at)', extra: () => ({ timestamp: Math.floor(Date.now() / 1000) }) },
];

/** Raw amqplib confirmed publishing of COUNT bodies with a window of WINDOW unconfirmed. */
async function rawConfirmed(extra) {
  const ch = await connection.createConfirmChannel();
  const started = process.hrtime.bigint();
  let inFlight = 0;
  let done = 0;
  await new Promise((resolve, reject) => {
    let sent = 0;
    const pump = () => {
      while (sent < COUNT && inFlight < WINDOW) {
        sent++;
        inFlight++;
        const options = { messageId: randomUUID(), type: 'bench.event', contentType: 'application/json', persistent: true, mandatory: true, ...extra() };
        ch.publish(exchange, 'bench.event', BODY, options, (err) => {
          if (err) return reject(err);
          inFlight--;
          done++;
          if (done === COUNT) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await ch.close();
  await admin.purgeQueue(queue);
  return { rate: COUNT / seconds, seconds };
}

const raw = variants.map(() => []);
const mailroom = [];
const naive = [];
const also = [];
const relays = [
  async () => naive.push(await drainWith(startNaive, COUNT)),
  async () => mailroom.push(await drainWith(startMailroom, COUNT)),
  ...(ALSO_ENV ? [async () => also.push(await drainWith((schema) => startMailroom(schema, ALSO_ENV), COUNT))] : []),
];
for (let run = 0; run < RUNS; run++) {
  await admin.purgeQueue(queue);
  for (const [i, v] of variants.entries()) raw[i].push(await rawConfirmed(v.extra));
  for (let i = 0; i < relays.length; i++) await relays[(i + run) % relays.length]();
  // The baseline again after the relays: the run's baseline is the mean of its two samples, so a
  // broker that was slower at the start or the end of the run does not tilt the ratios.
  const again = await rawConfirmed(variants[0].extra);
  const first = raw[0][run];
  raw[0][run] = { rate: (first.rate + again.rate) / 2, seconds: (first.seconds + again.seconds) / 2, samples: [first.rate, again.rate] };
  process.stderr.write(`run ${run + 1}/${RUNS} done\n`);
}
const big = BIG_COUNT > 0 ? { naive: await drainWith(startNaive, BIG_COUNT), mailroom: await drainWith(startMailroom, BIG_COUNT) } : undefined;
await admin.purgeQueue(queue);
await admin.deleteQueue(queue);
await admin.deleteExchange(exchange);
await connection.close();
await pool.end();

// On a shared machine the rates drift between runs, so each run's rate is compared with the raw
// rate (no headers) of the same run, and the median of those per-run ratios is reported.
const base = raw[0];
const ratiosTo = (list, baseline) => list.map((r, run) => r.rate / baseline[run].rate);
const ratioText = (ratios) => `${fmt(median(ratios), 2)} (${ratios.map((x) => fmt(x, 2)).join(' / ')})`;
const relayRow = (what, list) => ({
  what,
  'msg/s (median)': fmt(median(list.map((r) => r.rate))),
  runs: list.map((r) => fmt(r.rate)).join(' / '),
  'vs raw (median of runs)': ratioText(ratiosTo(list, base)),
  'CPU µs/msg': fmt(median(list.map((r) => r.cpuUsPerMessage)), 1),
  'CPU µs/msg incl. start': fmt(median(list.map((r) => r.cpuUsPerMessageWithStart)), 1),
  'start CPU s': fmt(median(list.map((r) => r.startCpuSeconds)), 2),
  'peak RSS MB': fmt(Math.max(...list.map((r) => r.peakRssMb)), 0),
});
const rows = [
  ...variants.map((v, i) => ({
    what: `raw confirmed publish (window ${WINDOW}), ${v.name}`,
    'msg/s (median)': fmt(median(raw[i].map((r) => r.rate))),
    runs: raw[i].map((r) => (r.samples ? `${fmt(r.rate)} (${r.samples.map((x) => fmt(x)).join('+')})` : fmt(r.rate))).join(' / '),
    'vs raw (median of runs)': ratioText(ratiosTo(raw[i], base)),
    'CPU µs/msg': '-',
    'CPU µs/msg incl. start': '-',
    'start CPU s': '-',
    'peak RSS MB': '-',
  })),
  relayRow('naive relay (process)', naive),
  relayRow('mailroom relay (sidecar process, defaults)', mailroom),
  ...(ALSO_ENV ? [relayRow(`mailroom relay (sidecar process, ${JSON.stringify(ALSO_ENV)})`, also)] : []),
];
if (big) {
  rows.push(relayRow(`naive relay, ${BIG_COUNT} backlog (1 run)`, [big.naive]));
  rows.push(relayRow(`mailroom relay, ${BIG_COUNT} backlog (1 run)`, [big.mailroom]));
}
const vsNaive = mailroom.map((r, run) => r.rate / naive[run].rate);
report('outbox-drain', rows, {
  command: `node bench/run.mjs drain (BENCH_RUNS=${RUNS} BENCH_DRAIN_COUNT=${COUNT} BENCH_DRAIN_BIG_COUNT=${BIG_COUNT}${process.env.BENCH_DRAIN_RELAY_ENV ? ` BENCH_DRAIN_RELAY_ENV=${process.env.BENCH_DRAIN_RELAY_ENV}` : ''}${ALSO_ENV ? ` BENCH_DRAIN_ALSO_ENV=${process.env.BENCH_DRAIN_ALSO_ENV}` : ''})`,
  messages: `${COUNT} x 1 KiB, persistent, mandatory, ${RUNS} runs, medians; rates from the first commit seen to the last row gone`,
  'load average at start': loadAtStart,
  'load average at end': loadAverage(),
  'mailroom relay / raw (no headers), median of per-run ratios': `${ratioText(ratiosTo(mailroom, base))} (target >= 0.80)`,
  'mailroom relay / naive relay, median of per-run ratios': `${ratioText(vsNaive)} (target >= 1.00)`,
  ...(ALSO_ENV ? { [`mailroom relay / mailroom relay with ${JSON.stringify(ALSO_ENV)}, median of per-run ratios`]: ratioText(mailroom.map((r, run) => r.rate / also[run].rate)) } : {}),
  'mailroom relay CPU µs/msg (without start-up)': `${fmt(median(mailroom.map((r) => r.cpuUsPerMessage)), 1)} (target <= 30)`,
  'mailroom relay peak RSS MB (any backlog)': `${fmt(Math.max(...mailroom.map((r) => r.peakRssMb), big?.mailroom.peakRssMb ?? 0), 0)} (target <= 150)`,
});
