// Consumer throughput (goal 4 of issue 10), every side in the same run on the same queue contents:
// COUNT distinct small events plus DUPLICATES redeliveries of some of them (same id, same body),
// mixed in, preloaded, then consumed with the same prefetch and the same pg pool size by
// - raw: amqplib, JSON parse, contract validation, ack; no database (a reference ceiling);
// - bare: amqplib, JSON parse, contract validation, the same inbox row (consumer, message id,
//   payload hash) INSERTed in autocommit (ON CONFLICT DO NOTHING), then ack: at least once (a
//   real handler beside it would apply a duplicate twice): the baseline of the goal;
// - mailroom: createConsumer with its inbox (exactly once), group commit on (the default);
// - mailroom, group commit off (maxBatchSize 1: one transaction per delivery, as before).
// Exactly-once is checked for mailroom: COUNT inbox rows, COUNT handled, DUPLICATES duplicates.
// Then the lone-message latency at 10 messages/s: publish → acked (the bare and raw consumers
// time their ack, mailroom its 'handled' event, which comes after the ack), p50 and p99.
// Prints per-run ratios, medians, the load average at start and end, the bench process's CPU per
// message and the whole machine's (PostgreSQL and RabbitMQ included).
import { randomUUID, hash } from 'node:crypto';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import amqp from 'amqplib';
import { z } from 'zod';
import { CONTENT_TYPE, defineMessage, MetricsRegistry } from '@mailroom/core';
import { envelopeHeaders } from '@mailroom/core/internal';
import { createConsumer, handler } from '@mailroom/inbox';
import { amqpUrl, fmt, freshSchema, loadAverage, machineBusy, median, newPool, quantile, report, tag } from './lib.mjs';

const COUNT = Number(process.env.BENCH_INBOX_COUNT ?? 20_000);
const DUPLICATES = Number(process.env.BENCH_INBOX_DUPLICATES ?? 2_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PREFETCH = Number(process.env.BENCH_INBOX_PREFETCH ?? 64);
const POOL = Number(process.env.BENCH_INBOX_POOL ?? 32);
const LATENCY_COUNT = Number(process.env.BENCH_INBOX_LATENCY_COUNT ?? 100);
const LATENCY_RATE = Number(process.env.BENCH_INBOX_LATENCY_RATE ?? 10);
// BENCH_INBOX_BEFORE=1: for code without the maxBatchSize option (the "before" measurement).
const BEFORE = process.env.BENCH_INBOX_BEFORE === '1';
const CORES = cpus().length;

const loadAtStart = loadAverage();
const pool = newPool(POOL);
const connection = await amqp.connect(amqpUrl);
const admin = await connection.createConfirmChannel();
const exchange = `bench.inbox.${tag()}`;
await admin.assertExchange(exchange, 'topic', { durable: true });
const Event = defineMessage('bench.event', z.object({ orderId: z.string(), n: z.number(), t: z.number().optional() }), { exchange });

/** COUNT distinct messages and DUPLICATES copies of earlier ones, spread evenly among them. */
function workload() {
  const out = [];
  const every = DUPLICATES > 0 ? Math.max(1, Math.floor(COUNT / DUPLICATES)) : Infinity;
  let dups = 0;
  for (let i = 0; i < COUNT; i++) {
    const message = { id: randomUUID(), body: Buffer.from(JSON.stringify({ orderId: `o-${i}`, n: i })) };
    out.push(message);
    // A duplicate of a message a few places back: sometimes in the same prefetch window, sometimes not.
    if ((i + 1) % every === 0 && dups < DUPLICATES) {
      out.push(out[Math.max(0, out.length - 1 - ((i * 7) % 97))]);
      dups++;
    }
  }
  return out;
}

function publishOne(queueExchange, message) {
  return admin.publish(queueExchange, 'bench.event', message.body, {
    messageId: message.id,
    type: 'bench.event',
    contentType: CONTENT_TYPE,
    persistent: true,
    timestamp: Math.floor(Date.now() / 1000),
    // The headers the relay writes (core's codec), so the consumer reads what it reads in production.
    headers: envelopeHeaders({ occurredAt: new Date() }),
  });
}

// The queue is declared as the consumer declares it, then filled, so every side starts from a full queue.
async function preload(queue, messages) {
  await admin.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
  await admin.bindQueue(queue, exchange, 'bench.event');
  for (const message of messages) {
    if (!publishOne(exchange, message)) await new Promise((resolve) => admin.once('drain', resolve));
  }
  await admin.waitForConfirms();
}

function measure() {
  const cpu0 = process.cpuUsage();
  const busy = machineBusy();
  const started = performance.now();
  return (count) => {
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const machine = busy();
    return {
      rate: count / seconds,
      seconds,
      cpuUsPerMessage: (cpu.user + cpu.system) / count,
      machineCpuUsPerMessage: (machine * CORES * seconds * 1e6) / count,
      machineBusy: machine,
    };
  };
}

async function inboxRows(schema, consumer) {
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".inbox WHERE consumer = $1`, [consumer]);
  return rows[0].n;
}

/** The mailroom consumer; resolves with its figures once every delivery was acked. */
async function mailroom(messages, { maxBatchSize, latency = false } = {}) {
  const { schema, drop } = await freshSchema(pool);
  const name = `bench.inbox.${tag()}`;
  if (!latency) await preload(name, messages);
  const expected = messages.length;
  let settled = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const sentAt = new Map();
  const latencies = [];
  const consumer = createConsumer({
    name,
    db: pool,
    amqp: amqpUrl,
    schema,
    prefetch: PREFETCH,
    metrics: new MetricsRegistry(),
    ...(maxBatchSize !== undefined && !BEFORE ? { maxBatchSize } : {}),
    // No sink: dead letters (there are none here) would wait in the queue.
    deadLetters: { exchange: `${name}.dead`, queue: `${name}.dead` },
    retention: { cleanupIntervalMs: 0 },
    handlers: [handler(Event, async () => undefined)],
  });
  const settle = (meta) => {
    const t = sentAt.get(meta.messageId);
    if (t !== undefined) latencies.push(performance.now() - t);
    if (++settled === expected) done();
  };
  consumer.on('handled', settle);
  consumer.on('duplicate', settle);
  let result;
  if (latency) {
    await admin.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'classic' } });
    await admin.bindQueue(name, exchange, 'bench.event');
    await consumer.start();
    result = await paced(messages, sentAt, finished);
  } else {
    const stop = measure();
    await consumer.start();
    await finished;
    result = stop(expected);
  }
  const stats = consumer.stats;
  await consumer.stop();
  const rows = await inboxRows(schema, name);
  for (const q of [name, ...consumer.delayQueues, `${name}.dead`]) await admin.deleteQueue(q);
  await admin.deleteExchange(`${name}.dead`);
  await drop();
  const distinct = new Set(messages.map((m) => m.id)).size;
  const exactlyOnce = rows === distinct && stats.handled === distinct && stats.duplicates === expected - distinct;
  return { ...result, latencies, exactlyOnce, check: `${rows} rows, ${stats.handled} handled, ${stats.duplicates} duplicates` };
}

/** A bare amqplib consumer: `work(content, message)` then ack; resolves once everything was acked. */
async function bare(messages, work, { latency = false } = {}) {
  const queue = `bench.bare.${tag()}`;
  if (latency) {
    await admin.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
    await admin.bindQueue(queue, exchange, 'bench.event');
  } else await preload(queue, messages);
  const ch = await connection.createChannel();
  await ch.prefetch(PREFETCH);
  const expected = messages.length;
  let acked = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const sentAt = new Map();
  const latencies = [];
  const stop = latency ? undefined : measure();
  await ch.consume(queue, (msg) => {
    const payload = Event.parse(JSON.parse(msg.content.toString('utf8')));
    work(payload, msg).then(() => {
      ch.ack(msg);
      const t = sentAt.get(msg.properties.messageId);
      if (t !== undefined) latencies.push(performance.now() - t);
      if (++acked === expected) done();
    }, (error) => {
      console.error(error);
      process.exit(1);
    });
  });
  const result = latency ? await paced(messages, sentAt, finished) : (await finished, stop(expected));
  await ch.close();
  await admin.deleteQueue(queue);
  return { ...result, latencies };
}

/** Publishes one message every 1/LATENCY_RATE s, noting when; resolves once all were settled. */
async function paced(messages, sentAt, finished) {
  const interval = 1000 / LATENCY_RATE;
  const t0 = performance.now();
  for (let i = 0; i < messages.length; i++) {
    const wait = t0 + i * interval - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    sentAt.set(messages[i].id, performance.now());
    publishOne(exchange, messages[i]);
  }
  await finished;
  return {};
}

const rawWork = async () => undefined;
async function bareInbox(messages, options) {
  const { schema, drop } = await freshSchema(pool);
  const consumer = `bench.bare.${tag()}`;
  const sql = `INSERT INTO "${schema}".inbox (consumer, message_id, payload_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`;
  const result = await bare(messages, (_payload, msg) => pool.query(sql, [consumer, msg.properties.messageId, hash('sha256', msg.content, 'buffer')]), options);
  const rows = await inboxRows(schema, consumer);
  await drop();
  return { ...result, rows };
}

const sides = {
  raw: (messages) => bare(messages, rawWork),
  bare: (messages) => bareInbox(messages),
  mailroom: (messages) => mailroom(messages),
  off: (messages) => mailroom(messages, { maxBatchSize: 1 }),
};
const names = Object.keys(sides);
const runs = Object.fromEntries(names.map((n) => [n, []]));
for (let run = 0; run < RUNS; run++) {
  const messages = workload();
  // Rotate the order so no side always runs on a warmer (or more loaded) machine.
  for (let i = 0; i < names.length; i++) {
    const name = names[(i + run) % names.length];
    runs[name].push(await sides[name](messages));
  }
  process.stderr.write(`run ${run + 1}/${RUNS}: ${names.map((n) => `${n} ${fmt(runs[n].at(-1).rate)}/s`).join(', ')}\n`);
}

// The lone message: one every 1/LATENCY_RATE s, publish → acked.
const lone = () => Array.from({ length: LATENCY_COUNT }, (_, i) => ({ id: randomUUID(), body: Buffer.from(JSON.stringify({ orderId: `l-${i}`, n: i })) }));
const latency = {
  raw: await bare(lone(), rawWork, { latency: true }),
  bare: await (async () => {
    const { schema, drop } = await freshSchema(pool);
    const sql = `INSERT INTO "${schema}".inbox (consumer, message_id, payload_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`;
    const r = await bare(lone(), (_p, msg) => pool.query(sql, ['bench.bare', msg.properties.messageId, hash('sha256', msg.content, 'buffer')]), { latency: true });
    await drop();
    return r;
  })(),
  mailroom: await mailroom(lone(), { latency: true }),
  off: await mailroom(lone(), { latency: true, maxBatchSize: 1 }),
};
await admin.deleteExchange(exchange);
await connection.close();
await pool.end();
const loadAtEnd = loadAverage();

const labels = {
  raw: 'raw amqplib, no database (reference)',
  bare: 'bare amqplib + inbox row in autocommit (at least once): baseline',
  mailroom: `mailroom inbox, group commit${BEFORE ? ' (before: none)' : ''} (exactly once)`,
  off: 'mailroom inbox, group commit off (maxBatchSize 1)',
};
const rate = (n) => median(runs[n].map((r) => r.rate));
const ratios = (n) => runs[n].map((r, i) => fmt(r.rate / runs.bare[i].rate, 2)).join(' / ');
const rows = names.map((n) => ({
  what: labels[n],
  'deliveries/s (median)': fmt(rate(n)),
  runs: runs[n].map((r) => fmt(r.rate)).join(' / '),
  'ratio to bare (per run)': ratios(n),
  'ratio (medians)': fmt(rate(n) / rate('bare'), 2),
  'CPU µs/delivery bench process': fmt(median(runs[n].map((r) => r.cpuUsPerMessage)), 1),
  'CPU µs/delivery machine': fmt(median(runs[n].map((r) => r.machineCpuUsPerMessage)), 1),
  'exactly once': runs[n][0].exactlyOnce === undefined ? '-' : runs[n].every((r) => r.exactlyOnce) ? 'yes' : `NO (${runs[n].map((r) => r.check).join('; ')})`,
  [`lone msg at ${LATENCY_RATE}/s publish→ack p50 / p99 ms`]: `${fmt(median(latency[n].latencies), 3)} / ${fmt(quantile(latency[n].latencies, 0.99), 3)}`,
}));
const allExactlyOnce = ['mailroom', 'off'].every((n) => runs[n].every((r) => r.exactlyOnce));
report('inbox-throughput', rows, {
  command: `${process.argv0} bench/inbox-throughput.bench.mjs (BENCH_RUNS=${RUNS} BENCH_INBOX_COUNT=${COUNT} BENCH_INBOX_DUPLICATES=${DUPLICATES})`,
  workload: `${COUNT} distinct small JSON events + ${DUPLICATES} duplicates mixed in (same id and body), preloaded; prefetch ${PREFETCH}, pg pool ${POOL}, ${RUNS} runs, medians; machine ${CORES} cores`,
  'load average (1/5/15 min) at start → end': `${loadAtStart} → ${loadAtEnd}`,
  'goal 4: mailroom / bare (medians, ≥ 1.0)': fmt(rate('mailroom') / rate('bare'), 3),
  'exactly once (mailroom: distinct rows = handled, every duplicate recognised)': allExactlyOnce ? 'yes' : 'NO',
  'bare consumer: inbox rows (distinct)': runs.bare.map((r) => r.rows).join(' / '),
  'machine busy during the mailroom runs (fraction of all cores)': runs.mailroom.map((r) => fmt(r.machineBusy, 2)).join(' / '),
  [`lone-message p50 the inbox adds at ${LATENCY_RATE} msg/s (ms, mailroom − bare, ≤ 0.5)`]: fmt(median(latency.mailroom.latencies) - median(latency.bare.latencies), 3),
  [`lone-message p50, group commit off − bare (ms)`]: fmt(median(latency.off.latencies) - median(latency.bare.latencies), 3),
  'lone-message exactly once': latency.mailroom.exactlyOnce && latency.off.exactlyOnce ? 'yes' : 'NO',
});
