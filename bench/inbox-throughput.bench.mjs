// Consumer throughput: N preloaded small events consumed by a mailroom consumer with the inbox
// (one transaction per delivery: inbox insert + trivial handler + commit, then ack), against the
// same work without inbox and without transaction (raw amqplib consumer: JSON parse, contract
// validation, trivial handler, ack), same prefetch, in the same run. Reports both rates, the
// ratio, the wall time per message the inbox adds, and the mean delivery-to-ack latency of each.
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { z } from 'zod';
import { CONTENT_TYPE, defineMessage, MetricsRegistry } from '@mailroom/core';
import { envelopeHeaders } from '@mailroom/core/internal';
import { createConsumer, handler } from '@mailroom/inbox';
import { amqpUrl, fmt, freshSchema, median, newPool, quantile, report, tag } from './lib.mjs';

const COUNT = Number(process.env.BENCH_INBOX_COUNT ?? 10_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PREFETCH = Number(process.env.BENCH_INBOX_PREFETCH ?? 64);
const POOL = Number(process.env.BENCH_INBOX_POOL ?? 32);
const LATENCY_COUNT = Number(process.env.BENCH_INBOX_LATENCY_COUNT ?? 1000);

const pool = newPool(POOL);
const connection = await amqp.connect(amqpUrl);
const admin = await connection.createConfirmChannel();
const exchange = `bench.inbox.${tag()}`;
await admin.assertExchange(exchange, 'topic', { durable: true });
const Event = defineMessage('bench.event', z.object({ orderId: z.string(), n: z.number() }), { exchange });

// The queue is declared as the consumer declares it, then filled, so both sides start from a full queue.
async function preload(queue, count) {
  await admin.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'classic' } });
  await admin.bindQueue(queue, exchange, 'bench.event');
  for (let i = 0; i < count; i++) {
    const body = Buffer.from(JSON.stringify({ orderId: `o-${i}`, n: i }));
    const ok = admin.publish(exchange, 'bench.event', body, {
      messageId: randomUUID(),
      type: 'bench.event',
      contentType: CONTENT_TYPE,
      persistent: true,
      timestamp: Math.floor(Date.now() / 1000),
      // The headers the relay would write (core's codec), so the consumer reads what it reads in production.
      headers: envelopeHeaders({ occurredAt: new Date() }),
    });
    if (!ok) await new Promise((resolve) => admin.once('drain', resolve));
  }
  await admin.waitForConfirms();
}

async function withInbox(prefetch = PREFETCH, count = COUNT) {
  const { schema, drop } = await freshSchema(pool);
  const name = `bench.inbox.${tag()}`;
  await preload(name, count);
  const metrics = new MetricsRegistry();
  const latencies = [];
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const consumer = createConsumer({
    name,
    db: pool,
    amqp: amqpUrl,
    schema,
    prefetch,
    metrics,
    // No sink: dead letters (there are none here) would wait in the queue, as with the old `sink: false`.
    deadLetters: { exchange: `${name}.dead`, queue: `${name}.dead` },
    retention: { cleanupIntervalMs: 0 },
    handlers: [handler(Event, async () => undefined)],
  });
  consumer.on('handled', (_meta, ms) => {
    latencies.push(ms);
    if (latencies.length === count) done();
  });
  const cpu0 = process.cpuUsage();
  const started = process.hrtime.bigint();
  await consumer.start();
  await finished;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await consumer.stop();
  for (const q of [name, ...consumer.delayQueues, `${name}.dead`]) await admin.deleteQueue(q);
  await admin.deleteExchange(`${name}.dead`);
  await drop();
  return summarize(count, seconds, latencies, cpu);
}

function summarize(count, seconds, latencies, cpu) {
  return {
    rate: count / seconds,
    meanLatencyMs: latencies.reduce((a, b) => a + b, 0) / latencies.length,
    p50LatencyMs: median(latencies),
    p99LatencyMs: quantile(latencies, 0.99),
    cpuUsPerMessage: (cpu.user + cpu.system) / count,
  };
}

async function withoutInbox(prefetch = PREFETCH, count = COUNT) {
  const queue = `bench.raw.${tag()}`;
  await preload(queue, count);
  const ch = await connection.createChannel();
  await ch.prefetch(prefetch);
  let handled = 0;
  const latencies = [];
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const trivial = async () => undefined;
  const cpu0 = process.cpuUsage();
  const started = process.hrtime.bigint();
  await ch.consume(queue, (msg) => {
    const t0 = performance.now();
    const payload = Event.parse(JSON.parse(msg.content.toString('utf8')));
    void trivial(payload).then(() => {
      ch.ack(msg);
      latencies.push(performance.now() - t0);
      handled++;
      if (handled === count) done();
    });
  });
  await finished;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await ch.close();
  await admin.deleteQueue(queue);
  return summarize(count, seconds, latencies, cpu);
}

const inbox = [];
const raw = [];
for (let run = 0; run < RUNS; run++) {
  // Alternate the order so neither side always runs on a warmer broker.
  if (run % 2 === 0) {
    raw.push(await withoutInbox());
    inbox.push(await withInbox());
  } else {
    inbox.push(await withInbox());
    raw.push(await withoutInbox());
  }
  process.stderr.write(`run ${run + 1}/${RUNS} done\n`);
}
// One message at a time: what the inbox transaction adds to a single message.
const rawOne = await withoutInbox(1, LATENCY_COUNT);
const inboxOne = await withInbox(1, LATENCY_COUNT);
await admin.deleteExchange(exchange);
await connection.close();
await pool.end();

const rawRate = median(raw.map((r) => r.rate));
const inboxRate = median(inbox.map((r) => r.rate));
const addedUs = (1 / inboxRate - 1 / rawRate) * 1e6;
const rows = [
  {
    what: 'no inbox, no transaction (raw amqplib)',
    'msg/s (median)': fmt(rawRate),
    runs: raw.map((r) => fmt(r.rate)).join(' / '),
    ratio: '1.00',
    'delivery-to-ack ms (mean)': fmt(median(raw.map((r) => r.meanLatencyMs)), 3),
    'CPU µs/msg (this process)': fmt(median(raw.map((r) => r.cpuUsPerMessage)), 1),
  },
  {
    what: 'mailroom consumer with inbox',
    'msg/s (median)': fmt(inboxRate),
    runs: inbox.map((r) => fmt(r.rate)).join(' / '),
    ratio: fmt(inboxRate / rawRate, 2),
    'delivery-to-ack ms (mean)': fmt(median(inbox.map((r) => r.meanLatencyMs)), 3),
    'CPU µs/msg (this process)': fmt(median(inbox.map((r) => r.cpuUsPerMessage)), 1),
  },
  {
    what: 'prefetch 1: no inbox',
    'msg/s (median)': fmt(rawOne.rate),
    runs: '1',
    ratio: '1.00',
    'delivery-to-ack ms (mean)': `${fmt(rawOne.meanLatencyMs, 3)} (p50 ${fmt(rawOne.p50LatencyMs, 3)}, p99 ${fmt(rawOne.p99LatencyMs, 3)})`,
    'CPU µs/msg (this process)': fmt(rawOne.cpuUsPerMessage, 1),
  },
  {
    what: 'prefetch 1: with inbox',
    'msg/s (median)': fmt(inboxOne.rate),
    runs: '1',
    ratio: fmt(inboxOne.rate / rawOne.rate, 2),
    'delivery-to-ack ms (mean)': `${fmt(inboxOne.meanLatencyMs, 3)} (p50 ${fmt(inboxOne.p50LatencyMs, 3)}, p99 ${fmt(inboxOne.p99LatencyMs, 3)})`,
    'CPU µs/msg (this process)': fmt(inboxOne.cpuUsPerMessage, 1),
  },
];
report('inbox-throughput', rows, {
  messages: `${COUNT} small JSON events preloaded, prefetch ${PREFETCH}, pg pool ${POOL}, ${RUNS} runs, medians; then ${LATENCY_COUNT} at prefetch 1`,
  'ratio inbox/raw': fmt(inboxRate / rawRate, 3),
  'wall time the inbox adds per message (µs, 1/inbox - 1/raw)': fmt(addedUs, 1),
  'delivery-to-ack latency the inbox adds under load (ms, mean, includes waiting for a pool connection)': fmt(
    median(inbox.map((r) => r.meanLatencyMs)) - median(raw.map((r) => r.meanLatencyMs)),
    3,
  ),
  'latency the inbox adds to one message (ms, p50 at prefetch 1)': fmt(inboxOne.p50LatencyMs - rawOne.p50LatencyMs, 3),
});
