// Partitioned consumers (must show 4 of issue 12): throughput of one consumer name spread over
// 1, 2 and 3 consumer PROCESSES sharing PARTITIONS partition queues (leases in PostgreSQL,
// consistent-hash exchange, single active consumer per partition), against the baseline in the
// same run: one bare consumer process on one work queue (no partitions, ordering on, so per-key
// order holds there too, within its one process). Every side is a child process running
// createConsumer from the built packages with the same prefetch, pool size and handler (a no-op:
// the inbox row is the work), waits until it is subscribed (partitioned: until the processes hold
// an even share); then KEYS keys x PER_KEY events are published while the handlers are held back,
// and the time from releasing them (SIGUSR2 to every worker) to the last inbox row is measured:
// the queues are full when the clock starts, so publishing does not bound the rate. Exactly once
// is checked: COUNT inbox rows each run.
// Prints per-run rates, medians and ratios to the baseline, and the load average at start and end.
//
//   node bench/partitions.bench.mjs            (or: pnpm bench partitions)
//   node bench/partitions.bench.mjs worker     (a consumer process; the bench starts these)
import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { z } from 'zod';
import { CONTENT_TYPE, defineMessage } from '@mailroom/core';
import { createConsumer, handler } from '@mailroom/inbox';
import { amqpUrl, databaseUrl, fmt, freshSchema, loadAverage, machineBusy, median, newPool, report, tag } from './lib.mjs';

const KEYS = Number(process.env.BENCH_PARTITIONS_KEYS ?? 120);
const PER_KEY = Number(process.env.BENCH_PARTITIONS_PER_KEY ?? 100);
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 12);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const PREFETCH = Number(process.env.BENCH_PARTITIONS_PREFETCH ?? 32);
const POOL = Number(process.env.BENCH_PARTITIONS_POOL ?? 8);
const PROCESSES = [1, 2, 3];
const COUNT = KEYS * PER_KEY;

const eventOf = (exchange) => defineMessage('bench.step', z.object({ key: z.string(), seq: z.number().int() }), { exchange });

if (process.argv[2] === 'worker') {
  // One consumer process: partitioned when BENCH_WORKER_PARTITIONS > 0, else the bare baseline.
  const env = process.env;
  const pool = newPool(POOL);
  const partitions = Number(env.BENCH_WORKER_PARTITIONS);
  // Handlers wait for the bench's go (SIGUSR2): the clock starts on full queues.
  let go;
  const released = new Promise((resolve) => (go = resolve));
  process.once('SIGUSR2', () => go());
  const consumer = createConsumer({
    name: env.BENCH_WORKER_NAME,
    db: pool,
    amqp: amqpUrl,
    schema: env.BENCH_WORKER_SCHEMA,
    prefetch: PREFETCH,
    ordering: true,
    ...(partitions > 0 ? { partitions: { count: partitions, rebalanceMs: 300 } } : {}),
    deadLetters: { exchange: env.BENCH_WORKER_DEAD, queue: env.BENCH_WORKER_DEAD },
    handlers: [handler(eventOf(env.BENCH_WORKER_EXCHANGE), async () => released)],
  });
  consumer.on('partitions', (held) => process.stdout.write(`held ${held.length}\n`));
  await consumer.start();
  process.stdout.write('ready\n');
  process.once('SIGTERM', () => void consumer.stop().then(() => pool.end()).then(() => process.exit(0)));
} else {
  await main();
}

/** Starts a worker; resolves with it once it printed `ready`. */
function startWorker(env) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'worker'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return { child, output: () => out, exited, held: () => Number(/held (\d+)\n(?![\s\S]*held)/.exec(out)?.[1] ?? 0) };
}

async function waitFor(what, test, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > until) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function main() {
  const loadAtStart = loadAverage();
  const pool = newPool(4);
  const { schema, drop } = await freshSchema(pool);
  const connection = await amqp.connect(amqpUrl);
  const admin = await connection.createConfirmChannel();
  const dead = `bench.partitions.dead.${tag()}`;
  const toDelete = { queues: new Set([dead]), exchanges: new Set([dead]) };
  const busy = machineBusy();
  const rates = new Map();

  /** One measured run: `processes` workers (0 partitions = the baseline), KEYS x PER_KEY events. */
  async function measure(label, processes, partitions) {
    const name = `bench.partitions.${tag()}`;
    const exchange = `${name}.events`;
    await admin.assertExchange(exchange, 'topic', { durable: true });
    toDelete.exchanges.add(exchange);
    if (partitions > 0) {
      toDelete.exchanges.add(`${name}.partitions`);
      for (let i = 0; i < partitions; i++) toDelete.queues.add(`${name}.p${String(i).padStart(3, '0')}`);
    } else {
      toDelete.queues.add(name);
      for (const ms of [1000, 2000, 4000, 8000]) toDelete.queues.add(`${name}.retry.${ms}ms`);
    }
    const env = { BENCH_WORKER_NAME: name, BENCH_WORKER_SCHEMA: schema, BENCH_WORKER_EXCHANGE: exchange, BENCH_WORKER_DEAD: dead, BENCH_WORKER_PARTITIONS: String(partitions) };
    const workers = [];
    try {
      for (let i = 0; i < processes; i++) workers.push(startWorker(env));
      await waitFor(`${label}: workers ready`, () => workers.every((w) => w.output().includes('ready')));
      if (partitions > 0) {
        const share = Math.ceil(partitions / processes);
        await waitFor(`${label}: an even share`, () => workers.reduce((n, w) => n + w.held(), 0) === partitions && workers.every((w) => w.held() <= share));
      }
      for (let seq = 0; seq < PER_KEY; seq++) {
        for (let k = 0; k < KEYS; k++) {
          const ok = admin.publish(exchange, 'bench.step', Buffer.from(JSON.stringify({ key: `k${k}`, seq })), {
            messageId: randomUUID(),
            type: 'bench.step',
            contentType: CONTENT_TYPE,
            persistent: true,
            headers: { 'x-mailroom-key': `k${k}` },
          });
          if (!ok) await new Promise((resolve) => admin.once('drain', resolve));
        }
      }
      await admin.waitForConfirms();
      const started = performance.now();
      for (const w of workers) w.child.kill('SIGUSR2');
      const count = async () => Number((await pool.query(`SELECT count(*)::int AS n FROM "${schema}".inbox WHERE consumer = $1`, [name])).rows[0].n);
      await waitFor(`${label}: ${COUNT} handled`, async () => (await count()) >= COUNT, 300_000);
      const seconds = (performance.now() - started) / 1000;
      const rows = await count();
      if (rows !== COUNT) throw new Error(`bench: ${label} left ${rows} inbox rows, expected ${COUNT}`);
      return COUNT / seconds;
    } finally {
      for (const w of workers) w.child.kill('SIGTERM');
      await Promise.all(workers.map((w) => Promise.race([w.exited, sleep(10_000)])));
      for (const w of workers) w.child.kill('SIGKILL');
    }
  }

  const sides = [['bare (1 process, 1 queue)', 1, 0], ...PROCESSES.map((p) => [`partitioned, ${p} process${p > 1 ? 'es' : ''}`, p, PARTITIONS])];
  const perRun = [];
  try {
    for (let run = 1; run <= RUNS; run++) {
      const row = { run };
      for (const [label, processes, partitions] of sides) {
        const rate = await measure(label, processes, partitions);
        rates.set(label, [...(rates.get(label) ?? []), rate]);
        row[label] = fmt(rate);
      }
      perRun.push(row);
      console.log(`run ${run}: ${JSON.stringify(row)}`);
    }
  } finally {
    const ch = await connection.createChannel();
    for (const q of toDelete.queues) await ch.deleteQueue(q).catch(() => undefined);
    for (const x of toDelete.exchanges) await ch.deleteExchange(x).catch(() => undefined);
    await connection.close().catch(() => undefined);
    await drop();
    await pool.end();
  }
  const baseline = median(rates.get(sides[0][0]));
  const rows = sides.map(([label]) => ({
    side: label,
    'median msg/s': fmt(median(rates.get(label))),
    'vs bare': fmt(median(rates.get(label)) / baseline, 2),
    runs: rates.get(label).map((r) => fmt(r)).join(' '),
  }));
  report('partitions', rows, {
    workload: `${KEYS} keys x ${PER_KEY} events = ${COUNT} messages, ${PARTITIONS} partitions, prefetch ${PREFETCH}, pool ${POOL} per process, ${RUNS} runs`,
    cores: cpus().length,
    'machine busy': `${fmt(busy() * 100)}% of all cores`,
    'load average': `${loadAtStart} at start, ${loadAverage()} at end`,
    database: databaseUrl.replace(/\/\/[^@]*@/, '//'),
  });
  void perRun;
}
