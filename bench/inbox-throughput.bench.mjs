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
// Then the lone-message latency at 10 messages/s: publish → acked (every side timed as its ack is
// sent, by a wrapper on amqplib's ack; mailroom's 'handled' event, which comes after the ack and
// its metrics, is reported beside it), p50 and p99, split into the broker's part and the consumer's. The four
// sides run at once, each on its own queue (its own routing key), and take turns: one message every
// 1/(4 × rate) s, to the next side in turn, so each side gets `rate` messages/s, alone (a message
// takes a few ms, the gap is 25 ms at 10/s), and every side sees the same machine at the same
// moments (a slower minute slows all four). The order of the turn is shuffled every round of four
// (seeded, the same in every run of the bench), so every side follows every other side as often:
// with one fixed cycle (BENCH_INBOX_LATENCY_ORDER=fixed, the order rotated per run) mailroom always
// came right after bare, and the side that comes right after another one's message can be slower
// (the "p50 by the side just before" line shows it). LATENCY_RUNS runs with fresh consumers; the
// added latency is mailroom's p50 − bare's p50 of the same run, reported per run and as the median
// of the runs.
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
const LATENCY_RUNS = Number(process.env.BENCH_INBOX_LATENCY_RUNS ?? 5);
const LATENCY_RATE = Number(process.env.BENCH_INBOX_LATENCY_RATE ?? 10);
// 'shuffled' (default): the turn's order drawn again every round; 'fixed': one cycle per run.
const LATENCY_ORDER = process.env.BENCH_INBOX_LATENCY_ORDER ?? 'shuffled';
// BENCH_INBOX_BEFORE=1: for code without the maxBatchSize option (the "before" measurement).
const BEFORE = process.env.BENCH_INBOX_BEFORE === '1';
// BENCH_INBOX_ONLY=latency: the lone-message runs alone (no throughput runs; results in inbox-latency.json).
const LATENCY_ONLY = process.env.BENCH_INBOX_ONLY === 'latency';
const CORES = cpus().length;

const loadAtStart = loadAverage();
const pool = newPool(POOL);
// noDelay, as mailroom's own connections (core's AmqpConnection): with Nagle's algorithm a publish
// that follows a bare consumer's ack on this connection waits for the broker's delayed TCP ACK
// (tens of ms), which the latency runs (sides in turns, 25 ms apart) would charge to whoever is next.
const connection = await amqp.connect(amqpUrl, { noDelay: true });
const admin = await connection.createConfirmChannel();
// The latency runs time every side at the same two points, whatever the consumer: its consume
// callback entered (the delivery reached the process) and its ack sent. Every consumer here,
// mailroom's included, uses this amqplib (one module), so its Channel's consume and ack are wrapped
// once; `amqpTimes` is set only during a latency run.
let amqpTimes;
{
  const channel = Object.getPrototypeOf(Object.getPrototypeOf(admin));
  const { consume, ack } = channel;
  channel.consume = function (queue, callback, options) {
    return consume.call(this, queue, (msg) => {
      if (msg !== null) amqpTimes?.delivered(msg);
      return callback(msg);
    }, options);
  };
  channel.ack = function (msg, ...rest) {
    const result = ack.call(this, msg, ...rest);
    amqpTimes?.acked(msg);
    return result;
  };
}
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

function publishOne(queueExchange, message, routingKey = 'bench.event') {
  return admin.publish(queueExchange, routingKey, message.body, {
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
async function mailroom(messages, { maxBatchSize } = {}) {
  const { schema, drop } = await freshSchema(pool);
  const name = `bench.inbox.${tag()}`;
  await preload(name, messages);
  const expected = messages.length;
  let settled = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
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
  const settle = () => {
    if (++settled === expected) done();
  };
  consumer.on('handled', settle);
  consumer.on('duplicate', settle);
  const stop = measure();
  await consumer.start();
  await finished;
  const result = stop(expected);
  const stats = consumer.stats;
  await consumer.stop();
  const rows = await inboxRows(schema, name);
  for (const q of [name, ...consumer.delayQueues, `${name}.dead`]) await admin.deleteQueue(q);
  await admin.deleteExchange(`${name}.dead`);
  await drop();
  const distinct = new Set(messages.map((m) => m.id)).size;
  const exactlyOnce = rows === distinct && stats.handled === distinct && stats.duplicates === expected - distinct;
  return { ...result, exactlyOnce, check: `${rows} rows, ${stats.handled} handled, ${stats.duplicates} duplicates` };
}

/**
 * A bare amqplib consumer on `queue`: `work(payload, message)` then ack, `onAcked(message)` after
 * the ack. Returns a function that closes its channel.
 */
async function bareConsumer(queue, work, onAcked) {
  const ch = await connection.createChannel();
  await ch.prefetch(PREFETCH);
  await ch.consume(queue, (msg) => {
    const payload = Event.parse(JSON.parse(msg.content.toString('utf8')));
    work(payload, msg).then(() => {
      ch.ack(msg);
      onAcked(msg);
    }, (error) => {
      console.error(error);
      process.exit(1);
    });
  });
  return () => ch.close();
}

/** A bare amqplib consumer of a preloaded queue; resolves once everything was acked. */
async function bare(messages, work) {
  const queue = `bench.bare.${tag()}`;
  await preload(queue, messages);
  const expected = messages.length;
  let acked = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const stop = measure();
  const close = await bareConsumer(queue, work, () => {
    if (++acked === expected) done();
  });
  await finished;
  const result = stop(expected);
  await close();
  await admin.deleteQueue(queue);
  return result;
}

const rawWork = async () => undefined;
/** The bare consumer's work: the inbox row, in autocommit. */
const bareInboxWork = (schema, consumer) => {
  const sql = `INSERT INTO "${schema}".inbox (consumer, message_id, payload_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`;
  return (_payload, msg) => pool.query(sql, [consumer, msg.properties.messageId, hash('sha256', msg.content, 'buffer')]);
};
async function bareInbox(messages) {
  const { schema, drop } = await freshSchema(pool);
  const consumer = `bench.bare.${tag()}`;
  const result = await bare(messages, bareInboxWork(schema, consumer));
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
for (let run = 0; run < (LATENCY_ONLY ? 0 : RUNS); run++) {
  const messages = workload();
  // Rotate the order so no side always runs on a warmer (or more loaded) machine.
  for (let i = 0; i < names.length; i++) {
    const name = names[(i + run) % names.length];
    runs[name].push(await sides[name](messages));
  }
  process.stderr.write(`run ${run + 1}/${RUNS}: ${names.map((n) => `${n} ${fmt(runs[n].at(-1).rate)}/s`).join(', ')}\n`);
}

// The lone message: each side one every 1/LATENCY_RATE s, publish → acked, the sides taking turns.
/**
 * One side of the latency runs on its own queue bound with routing key `lat.<side>`; calls
 * `onSettled(messageId)` once a message is acked (mailroom: its 'handled' or 'duplicate' event,
 * after the ack). Returns `stop()`, which resolves with an exactly-once check where there is one.
 */
async function latencySide(side, schema, onSettled) {
  const name = `bench.lat.${side}.${tag()}`;
  const routingKey = `lat.${side}`;
  if (side === 'raw' || side === 'bare') {
    await admin.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'classic' } });
    await admin.bindQueue(name, exchange, routingKey);
    const close = await bareConsumer(name, side === 'raw' ? rawWork : bareInboxWork(schema, name), (msg) => onSettled(msg.properties.messageId));
    return {
      routingKey,
      async stop() {
        await close();
        await admin.deleteQueue(name);
        return undefined;
      },
    };
  }
  const consumer = createConsumer({
    name,
    db: pool,
    amqp: amqpUrl,
    schema,
    prefetch: PREFETCH,
    metrics: new MetricsRegistry(),
    ...(side === 'off' && !BEFORE ? { maxBatchSize: 1 } : {}),
    bindings: [{ exchange, routingKey }],
    deadLetters: { exchange: `${name}.dead`, queue: `${name}.dead` },
    retention: { cleanupIntervalMs: 0 },
    handlers: [handler(Event, async () => undefined)],
  });
  consumer.on('handled', (meta) => onSettled(meta.messageId));
  consumer.on('duplicate', (meta) => onSettled(meta.messageId));
  await consumer.start();
  return {
    routingKey,
    async stop() {
      const stats = consumer.stats;
      await consumer.stop();
      const rows = await inboxRows(schema, name);
      for (const q of [name, ...consumer.delayQueues, `${name}.dead`]) await admin.deleteQueue(q);
      await admin.deleteExchange(`${name}.dead`);
      return rows === LATENCY_COUNT && stats.handled === LATENCY_COUNT && stats.duplicates === 0;
    },
  };
}

/** One latency run: every side at once, LATENCY_COUNT messages each, in turns (`order`). */
async function latencyRun(order, seed) {
  const { schema, drop } = await freshSchema(pool);
  // Per message: its side, the side whose message went out just before it, and when it was
  // published, delivered (consume callback), acked, and settled (mailroom: 'handled').
  const sent = new Map();
  const random = seeded(seed);
  let round = [...order];
  let previous;
  let settled = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const total = LATENCY_COUNT * order.length;
  const at = (field) => (msg) => {
    const record = sent.get(msg.properties.messageId);
    if (record !== undefined && record[field] === undefined) record[field] = performance.now();
  };
  amqpTimes = { delivered: at('delivered'), acked: at('acked') };
  const sides = {};
  for (const side of order) {
    sides[side] = await latencySide(side, schema, (id) => {
      const record = sent.get(id);
      if (record === undefined || record.settled !== undefined) return;
      record.settled = performance.now();
      if (++settled === total) done();
    });
  }
  // Let every consumer settle in (subscriptions, first checkouts) before the first message.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const interval = 1000 / (LATENCY_RATE * order.length);
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = t0 + i * interval - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (LATENCY_ORDER !== 'fixed' && i % order.length === 0) round = shuffle(order, random);
    const side = round[i % order.length];
    const message = { id: randomUUID(), body: Buffer.from(JSON.stringify({ orderId: `l-${i}`, n: i })) };
    sent.set(message.id, { side, previous, published: performance.now() });
    previous = side;
    publishOne(exchange, message, sides[side].routingKey);
  }
  await finished;
  amqpTimes = undefined;
  const exactlyOnce = {};
  for (const side of order) exactlyOnce[side] = await sides[side].stop();
  await drop();
  const records = [...sent.values()];
  const of = (side, from, to) => records.filter((r) => r.side === side && r[to] !== undefined).map((r) => r[to] - r[from]);
  const per = (fn) => Object.fromEntries(names.map((n) => [n, fn(n)]));
  return {
    // publish → ack sent: the figure of the goal.
    latencies: per((n) => of(n, 'published', 'acked')),
    // publish → settled ('handled' for mailroom, which comes after the ack; the ack for bare and raw).
    settled: per((n) => of(n, 'published', 'settled')),
    // The broker's part (publish → in the consumer's callback) and the consumer's (callback → ack).
    delivery: per((n) => of(n, 'published', 'delivered')),
    work: per((n) => of(n, 'delivered', 'acked')),
    after: per((n) => Object.fromEntries(names.map((m) => [m, records.filter((r) => r.side === n && r.previous === m && r.acked !== undefined).map((r) => r.acked - r.published)]))),
    exactlyOnce,
  };
}

/** A small seeded generator (mulberry32): the same shuffles in every run of the bench. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A shuffled copy (Fisher–Yates). */
function shuffle(items, random) {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const latencyRuns = [];
for (let run = 0; run < LATENCY_RUNS; run++) {
  const order = names.map((_, i) => names[(i + run) % names.length]);
  latencyRuns.push(await latencyRun(order, 0x5eed + run));
  const r = latencyRuns.at(-1);
  process.stderr.write(`latency run ${run + 1}/${LATENCY_RUNS} (${LATENCY_ORDER === 'fixed' ? order.join(' → ') : 'shuffled per round'}): p50 ${names.map((n) => `${n} ${fmt(median(r.latencies[n]), 3)}`).join(', ')} ms; callback → ack ${names.map((n) => `${n} ${fmt(median(r.work[n]), 3)}`).join(', ')} ms\n`);
}
const p50 = (run, n) => median(run.latencies[n]);
const added = (n) => latencyRuns.map((run) => p50(run, n) - p50(run, 'bare'));
const pooled = (n) => latencyRuns.flatMap((run) => run.latencies[n]);
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
  ...(LATENCY_ONLY ? {} : {
  'deliveries/s (median)': fmt(rate(n)),
  runs: runs[n].map((r) => fmt(r.rate)).join(' / '),
  'ratio to bare (per run)': ratios(n),
  'ratio (medians)': fmt(rate(n) / rate('bare'), 2),
  'CPU µs/delivery bench process': fmt(median(runs[n].map((r) => r.cpuUsPerMessage)), 1),
  'CPU µs/delivery machine': fmt(median(runs[n].map((r) => r.machineCpuUsPerMessage)), 1),
  'exactly once': runs[n][0].exactlyOnce === undefined ? '-' : runs[n].every((r) => r.exactlyOnce) ? 'yes' : `NO (${runs[n].map((r) => r.check).join('; ')})`,
  }),
  [`lone msg at ${LATENCY_RATE}/s publish→ack p50 / p99 ms (all runs)`]: `${fmt(median(pooled(n)), 3)} / ${fmt(quantile(pooled(n), 0.99), 3)}`,
  'lone msg p50 per run ms': latencyRuns.map((run) => fmt(p50(run, n), 3)).join(' / '),
}));
const allExactlyOnce = !LATENCY_ONLY && ['mailroom', 'off'].every((n) => runs[n].every((r) => r.exactlyOnce));
report(LATENCY_ONLY ? 'inbox-latency' : 'inbox-throughput', rows, {
  command: `${process.argv0} bench/inbox-throughput.bench.mjs (BENCH_RUNS=${RUNS} BENCH_INBOX_COUNT=${COUNT} BENCH_INBOX_DUPLICATES=${DUPLICATES}${LATENCY_ONLY ? ' BENCH_INBOX_ONLY=latency' : ''})`,
  'load average (1/5/15 min) at start → end': `${loadAtStart} → ${loadAtEnd}`,
  ...(LATENCY_ONLY
    ? {}
    : {
        workload: `${COUNT} distinct small JSON events + ${DUPLICATES} duplicates mixed in (same id and body), preloaded; prefetch ${PREFETCH}, pg pool ${POOL}, ${RUNS} runs, medians; machine ${CORES} cores`,
        'goal 4: mailroom / bare (medians, ≥ 1.0)': fmt(rate('mailroom') / rate('bare'), 3),
        'exactly once (mailroom: distinct rows = handled, every duplicate recognised)': allExactlyOnce ? 'yes' : 'NO',
        'bare consumer: inbox rows (distinct)': runs.bare.map((r) => r.rows).join(' / '),
        'machine busy during the mailroom runs (fraction of all cores)': runs.mailroom.map((r) => fmt(r.machineBusy, 2)).join(' / '),
      }),
  'lone-message workload': `${LATENCY_RUNS} runs × ${LATENCY_COUNT} messages per side at ${LATENCY_RATE}/s each, the four sides at once in turns (one message every ${fmt(1000 / (LATENCY_RATE * names.length), 1)} ms), ${LATENCY_ORDER === 'fixed' ? 'one fixed cycle, rotated per run' : 'order shuffled every round (seeded)'}`,
  [`lone-message p50 the inbox adds at ${LATENCY_RATE} msg/s (ms, mailroom − bare, median of runs, ≤ 0.5)`]: fmt(median(added('mailroom')), 3),
  'lone-message p50 added, per run (ms)': added('mailroom').map((v) => fmt(v, 3)).join(' / '),
  [`lone-message p50, group commit off − bare (ms, median of runs)`]: fmt(median(added('off')), 3),
  'lone-message p50, group commit off − bare, per run (ms)': added('off').map((v) => fmt(v, 3)).join(' / '),
  'lone-message p50, group commit on − off, per run (ms)': latencyRuns.map((run) => fmt(p50(run, 'mailroom') - p50(run, 'off'), 3)).join(' / '),
  'lone-message p50 split (median of runs, ms; publish → in the consumer callback + callback → ack)': names
    .map((n) => `${n}: ${fmt(median(latencyRuns.map((run) => median(run.delivery[n]))), 3)} + ${fmt(median(latencyRuns.map((run) => median(run.work[n]))), 3)}`)
    .join('; '),
  'lone-message p50 added by the consumer\'s work (callback → ack, mailroom − bare, median of runs, ms)': fmt(median(latencyRuns.map((run) => median(run.work.mailroom) - median(run.work.bare))), 3),
  "lone-message p50 added, timed at mailroom's 'handled' event instead of its ack (median of runs, ms)": fmt(median(latencyRuns.map((run) => median(run.settled.mailroom) - median(run.settled.bare))), 3),
  'lone-message p50 by the side just before (all runs, ms; side: after raw / bare / mailroom / off)': names
    .map((n) => `${n}: ${names.map((m) => fmt(median(latencyRuns.flatMap((run) => run.after[n][m])), 3)).join(' / ')}`)
    .join('; '),
  'lone-message exactly once': latencyRuns.every((run) => run.exactlyOnce.mailroom && run.exactlyOnce.off) ? 'yes' : 'NO',
});
