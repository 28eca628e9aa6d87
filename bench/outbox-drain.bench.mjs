// Drain: 20,000 preloaded 1 KiB events published by the relay, against raw amqplib confirmed
// publishing of the same messages (one confirm channel, a sliding window of unconfirmed
// publishes), in the same run. Reports both rates, the ratio, and relay CPU per message.
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue } from '@mailroom/outbox';
import { amqpUrl, databaseUrl, fmt, freshSchema, median, newPool, report, tag } from './lib.mjs';

const COUNT = Number(process.env.BENCH_DRAIN_COUNT ?? 20_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const WINDOW = 1000;
const PAYLOAD = { pad: 'x'.repeat(1024 - 20), n: 0 };

const pool = newPool(6);
const connection = await amqp.connect(amqpUrl);
const admin = await connection.createChannel();
const exchange = `bench.drain.${tag()}`;
const queue = `${exchange}.q`;
await admin.assertExchange(exchange, 'topic', { durable: true });
await admin.assertQueue(queue, { durable: true });
await admin.bindQueue(queue, exchange, '#');
const Event = defineMessage('bench.event', z.object({ pad: z.string(), n: z.number() }), { exchange });

async function rawConfirmed() {
  const ch = await connection.createConfirmChannel();
  const body = Buffer.from(JSON.stringify(PAYLOAD));
  const started = process.hrtime.bigint();
  let inFlight = 0;
  let done = 0;
  let wake;
  await new Promise((resolve, reject) => {
    let sent = 0;
    const pump = () => {
      while (sent < COUNT && inFlight < WINDOW) {
        sent++;
        inFlight++;
        ch.publish(
          exchange,
          'bench.event',
          body,
          { messageId: randomUUID(), type: 'bench.event', contentType: 'application/json', persistent: true, mandatory: true, headers: {} },
          (err) => {
            if (err) return reject(err);
            inFlight--;
            done++;
            if (done === COUNT) resolve();
            else if (wake) wake();
          },
        );
      }
    };
    wake = pump;
    pump();
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await ch.close();
  return { rate: COUNT / seconds, seconds };
}

async function preload(schema) {
  const client = await pool.connect();
  try {
    for (let i = 0; i < COUNT; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, COUNT - i) }, (_, j) => Event.create({ ...PAYLOAD, n: i + j }));
      await client.query('BEGIN');
      await enqueue(client, batch, { schema });
      await client.query('COMMIT');
    }
  } finally {
    client.release();
  }
  await pool.query(`VACUUM ANALYZE "${schema}".outbox`);
}

async function relayDrain(options) {
  const { schema, drop } = await freshSchema(pool);
  await preload(schema);
  const relay = createRelay({ database: databaseUrl, amqp: amqpUrl, schema, ...options });
  let published = 0;
  const finished = new Promise((resolve) => {
    relay.on('batch', (b) => {
      published += b.published;
      if (published >= COUNT) resolve();
    });
  });
  const cpu0 = process.cpuUsage();
  const started = process.hrtime.bigint();
  await relay.start();
  await finished;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await relay.stop();
  await drop();
  return { rate: COUNT / seconds, seconds, cpuUsPerMessage: (cpu.user + cpu.system) / COUNT };
}

const configs = JSON.parse(process.env.BENCH_DRAIN_CONFIGS ?? 'null') ?? [
  { name: 'relay (defaults: batch 500, 3 workers)', options: {} },
  { name: 'relay (batch 200, 2 workers)', options: { batchSize: 200, concurrency: 2 } },
  { name: 'relay (batch 1000, 3 workers)', options: { batchSize: 1000, concurrency: 3 } },
];
const raw = [];
const relays = configs.map(() => []);
for (let run = 0; run < RUNS; run++) {
  await admin.purgeQueue(queue);
  raw.push(await rawConfirmed());
  for (const [i, c] of configs.entries()) {
    await admin.purgeQueue(queue);
    relays[i].push(await relayDrain(c.options));
  }
  process.stderr.write(`run ${run + 1}/${RUNS} done\n`);
}
await admin.purgeQueue(queue);
await admin.deleteQueue(queue);
await admin.deleteExchange(exchange);
await connection.close();
await pool.end();

// On a shared machine the rates drift between runs, so each run's relay rate is compared with the
// raw rate of the same run, and the median of those per-run ratios is reported.
const rawRate = median(raw.map((r) => r.rate));
const ratios = (i) => relays[i].map((r, run) => r.rate / raw[run].rate);
const rows = [
  { what: `raw amqplib confirmed publish (window ${WINDOW})`, 'msg/s (median)': fmt(rawRate), runs: raw.map((r) => fmt(r.rate)).join(' / '), 'ratio (median of runs)': '1.00', 'relay CPU µs/msg': '-' },
  ...configs.map((c, i) => ({
    what: c.name,
    'msg/s (median)': fmt(median(relays[i].map((r) => r.rate))),
    runs: relays[i].map((r) => fmt(r.rate)).join(' / '),
    'ratio (median of runs)': `${fmt(median(ratios(i)), 2)} (${ratios(i).map((x) => fmt(x, 2)).join(' / ')})`,
    'relay CPU µs/msg': fmt(median(relays[i].map((r) => r.cpuUsPerMessage)), 1),
  })),
];
report('outbox-drain', rows, {
  messages: `${COUNT} x 1 KiB, persistent, mandatory, ${RUNS} runs, medians`,
  'ratio relay/raw (defaults), median of per-run ratios': fmt(median(ratios(0)), 2),
  target: '>= 0.80 of raw',
});
