// Producer: 8 connections each commit `BEGIN; INSERT domain row; <event>; COMMIT` as fast as they
// can for BENCH_PRODUCER_SECONDS. <event> is, in the same run and interleaved:
//   plain          a plain INSERT of the same outbox row into a table shaped like the outbox
//                  (`LIKE outbox INCLUDING ALL`): the baseline of goal 1;
//   plain+notify   the same INSERT followed by pg_notify, as the old enqueue did (reference);
//   plain+trigger  the plain INSERT into mailroom's outbox itself (its insert trigger runs; no relay):
//                  what the trigger costs;
//   enqueue        mailroom's `enqueue`, no relay running;
//   enqueue+relay  `enqueue` with the relay sidecar (`mailroom relay`) running and draining;
//   enqueue+asleep `enqueue` while a relay sidecar is registered as sleeping and never wakes (its
//                  process is stopped with SIGSTOP after it went to sleep): the worst case, every
//                  producer transaction notifies.
// Reports tx/s per run, medians, ratios to `plain` per run, NOTIFYs per transaction (a LISTEN of the
// bench counts them), the whole machine's busy fraction and the load average.
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { amqpUrl, databaseUrl, fmt, freshSchema, loadAverage, machineBusy, median, newPool, report, startProcess, tag } from './lib.mjs';

const CONNECTIONS = Number(process.env.BENCH_PRODUCER_CONNECTIONS ?? 8);
const SECONDS = Number(process.env.BENCH_PRODUCER_SECONDS ?? 5);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const VARIANTS = (process.env.BENCH_PRODUCER_VARIANTS ?? 'plain,plain+notify,plain+trigger,enqueue,enqueue+relay,enqueue+asleep').split(',');
const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));

const loadAtStart = loadAverage();
const pool = newPool(CONNECTIONS + 2);
const connection = await amqp.connect(amqpUrl);
const admin = await connection.createChannel();
const exchange = `bench.producer.${tag()}`;
await admin.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });
const { queue } = await admin.assertQueue('', { exclusive: true, durable: false });
await admin.bindQueue(queue, exchange, '#');
const Event = defineMessage('bench.order-placed', z.object({ orderId: z.string(), n: z.number(), total: z.number() }), { exchange });

async function relaySidecar(schema) {
  const relay = await startProcess(CLI, ['relay'], {
    MAILROOM_DATABASE_URL: databaseUrl,
    MAILROOM_AMQP_URL: amqpUrl,
    MAILROOM_SCHEMA: schema,
    MAILROOM_HTTP_PORT: '0',
    MAILROOM_LOG_LEVEL: 'warn',
  });
  return relay;
}

/** One measurement of `variant` on a fresh schema: transactions per second of all connections. */
async function measure(variant) {
  const { schema, drop } = await freshSchema(pool);
  const q = `"${schema}"`;
  await pool.query(`CREATE TABLE ${q}.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id text NOT NULL, total numeric NOT NULL, placed_at timestamptz NOT NULL DEFAULT now())`);
  await pool.query(`CREATE TABLE ${q}.shadow_outbox (LIKE ${q}.outbox INCLUDING ALL)`);
  let relay;
  if (variant === 'enqueue+relay' || variant === 'enqueue+asleep') {
    relay = await relaySidecar(schema);
    // Let its workers finish the start-up batch and go to sleep.
    await new Promise((r) => setTimeout(r, 1000));
    if (variant === 'enqueue+asleep') process.kill(relay.pid, 'SIGSTOP');
  }
  const clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => pool.connect()));
  const notifies = await pool.connect();
  let notified = 0;
  let ended = false;
  notifies.on('notification', (n) => (n.payload === 'end' ? (ended = true) : notified++));
  await notifies.query(`LISTEN "mailroom_outbox_${schema}"`);
  const target = variant === 'plain+trigger' ? 'outbox' : 'shadow_outbox';
  const plainSql = `INSERT INTO ${q}.${target} (message_id, type, exchange, routing_key, key, headers, payload, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`;
  const event = async (client, n) => {
    const message = Event.create({ orderId: `o-${n}`, n, total: 42.5 });
    if (variant.startsWith('plain')) {
      await client.query(plainSql, [message.messageId, message.type, message.exchange, message.routingKey, null, '{}', JSON.stringify(message.payload), message.occurredAt]);
      if (variant === 'plain+notify') await client.query(`SELECT pg_notify($1, '')`, [`mailroom_outbox_${schema}`]);
    } else {
      await enqueue(client, message, { schema });
    }
  };
  let count = 0;
  let stopping = false;
  const busy = machineBusy();
  const started = performance.now();
  const timer = setTimeout(() => (stopping = true), SECONDS * 1000);
  await Promise.all(
    clients.map(async (client) => {
      while (!stopping) {
        const n = count++;
        await client.query('BEGIN');
        await client.query(`INSERT INTO ${q}.orders (order_id, total) VALUES ($1, $2)`, [`o-${n}`, 42.5]);
        await event(client, n);
        await client.query('COMMIT');
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const busyFraction = busy();
  clearTimeout(timer);
  for (const c of clients) c.release();
  // Every NOTIFY of a committed transaction is in once this one is.
  await pool.query(`NOTIFY "mailroom_outbox_${schema}", 'end'`);
  while (!ended) await new Promise((r) => setTimeout(r, 5));
  notifies.release(true);
  if (relay) {
    if (variant === 'enqueue+asleep') process.kill(relay.pid, 'SIGCONT');
    await relay.stop();
  }
  await drop();
  return { tps: count / elapsed, busy: busyFraction, notifyPerTx: notified / count };
}

const results = Object.fromEntries(VARIANTS.map((v) => [v, []]));
for (let run = 0; run < RUNS; run++) {
  // Interleaved: every variant once per run, in a rotating order.
  const order = VARIANTS.map((_, i) => VARIANTS[(i + run) % VARIANTS.length]);
  for (const variant of order) results[variant].push(await measure(variant));
  await admin.purgeQueue(queue);
  process.stderr.write(`run ${run + 1}/${RUNS} done\n`);
}
await admin.deleteExchange(exchange);
await connection.close();
await pool.end();

const plain = results.plain ?? [];
const rows = VARIANTS.map((variant) => {
  const runs = results[variant];
  const ratios = plain.length === runs.length ? runs.map((r, i) => r.tps / plain[i].tps) : [];
  return {
    variant,
    'tx/s median': fmt(median(runs.map((r) => r.tps))),
    'tx/s per run': runs.map((r) => fmt(r.tps)).join(' / '),
    'x plain per run': ratios.map((r) => fmt(r, 2)).join(' / '),
    'x plain median': fmt(median(ratios), 2),
    'NOTIFY per tx': fmt(median(runs.map((r) => r.notifyPerTx)), 3),
    'machine busy': fmt(median(runs.map((r) => r.busy)), 2),
  };
});
report('producer', rows, {
  load: `${CONNECTIONS} connections, ${SECONDS} s per run, ${RUNS} runs interleaved; one domain row + one event per transaction`,
  command: 'node bench/run.mjs producer',
  'load average at start': loadAtStart,
  'load average at end': loadAverage(),
  target: 'enqueue >= 0.8 x plain (goal 1); the row with a relay draining is for reference: that relay, and the broker it feeds, take their CPU from the same two cores the plain baseline has to itself',
});
