// The event archive (issue 14, must-show 2), three measurements in one run:
// 1. Drain: COUNT (20,000) preloaded 1 KiB events drained by the relay (in this process) with
//    `archive: true` and with it off, alternating which goes first per run; rates from the first
//    commit seen to the last row gone; per-run ratio on/off, median.
// 2. Replay: `replayHistory` of the archive the "on" drain wrote (COUNT events) to one queue,
//    events per second; per-run ratio to the "off" drain rate of the same run (both publish the
//    same bodies with confirms), median.
// 3. Retention: a day partition of DROP_ROWS (1,000,000) archived rows removed by `DROP TABLE`
//    (after DETACH) vs the baseline, a `DELETE` of a day of the same size from a partition of the
//    same table; one run (the fill takes most of the time).
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue, replayHistory } from '@mailroom/outbox';
import { amqpUrl, fmt, freshSchema, loadAverage, median, newPool, report, tag } from './lib.mjs';

const COUNT = Number(process.env.BENCH_ARCHIVE_COUNT ?? 20_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DROP_ROWS = Number(process.env.BENCH_ARCHIVE_DROP_ROWS ?? 1_000_000);
const PAYLOAD = { pad: 'x'.repeat(1024 - 20), n: 0 };
const loadAtStart = loadAverage();

const pool = newPool(8);
const connection = await amqp.connect(amqpUrl);
const admin = await connection.createChannel();
const exchange = `bench.archive.${tag()}`;
const queue = `${exchange}.q`;
const replayQueue = `${exchange}.replay`;
await admin.assertExchange(exchange, 'topic', { durable: true });
await admin.assertQueue(queue, { durable: true });
await admin.bindQueue(queue, exchange, '#');
await admin.assertQueue(replayQueue, { durable: true });
const Event = defineMessage('bench.event', z.object({ pad: z.string(), n: z.number() }), { exchange });

async function preload(schema, count) {
  const client = await pool.connect();
  try {
    const first = Math.min(1000, count);
    await client.query('BEGIN');
    await enqueue(client, Array.from({ length: first }, (_, n) => Event.create({ ...PAYLOAD, n }, { key: `k-${n % 100}` })), { schema });
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

async function drain(archive) {
  const { schema, drop } = await freshSchema(pool);
  await preload(schema, COUNT);
  await admin.purgeQueue(queue);
  const relay = createRelay({ database: pool, amqp: amqpUrl, schema, archive, pollIntervalMs: 50 });
  await relay.start();
  let firstSeen;
  let ended;
  const deadline = Date.now() + 180_000;
  for (;;) {
    const asked = process.hrtime.bigint();
    const left = await remaining(schema);
    if (firstSeen === undefined && left < COUNT) firstSeen = { at: asked, left };
    if (left === 0) {
      ended = process.hrtime.bigint();
      break;
    }
    if (Date.now() > deadline) throw new Error(`the relay left ${left} rows`);
    await sleep(20);
  }
  await relay.stop();
  const seconds = Number(ended - firstSeen.at) / 1e9;
  return { rate: firstSeen.left / seconds, schema, drop };
}

const on = [];
const off = [];
const replay = [];
for (let run = 0; run < RUNS; run++) {
  const order = run % 2 === 0 ? [true, false] : [false, true];
  let archived;
  for (const archive of order) {
    const result = await drain(archive);
    (archive ? on : off).push(result.rate);
    if (archive) archived = result;
    else await result.drop();
  }
  const n = Number((await pool.query(`SELECT count(*) AS n FROM "${archived.schema}".outbox_archive`)).rows[0].n);
  if (n !== COUNT) throw new Error(`archive holds ${n} rows, expected ${COUNT}`);
  await admin.purgeQueue(replayQueue);
  const started = process.hrtime.bigint();
  const result = await replayHistory({ database: pool, amqp: amqpUrl, schema: archived.schema, queue: replayQueue, batchSize: 1000 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.published !== COUNT) throw new Error(`replayed ${result.published}`);
  replay.push(COUNT / seconds);
  await admin.purgeQueue(replayQueue);
  await archived.drop();
  process.stderr.write(`run ${run + 1}/${RUNS}: drain on ${fmt(on.at(-1))}/s, off ${fmt(off.at(-1))}/s, replay ${fmt(replay.at(-1))}/s\n`);
}

// Retention: two days of DROP_ROWS rows each in their own partitions (small payloads: the cost
// is per row and per index entry, and a fill of 2 x 1M 1 KiB rows would not fit the machine).
const { schema, drop } = await freshSchema(pool);
const archiveTable = `"${schema}".outbox_archive`;
for (const [day, next] of [['2020-01-01', '2020-01-02'], ['2020-01-02', '2020-01-03']]) {
  await pool.query(`CREATE TABLE "${schema}"."outbox_archive_${day.replaceAll('-', '')}" PARTITION OF ${archiveTable} FOR VALUES FROM ('${day} 00:00+00') TO ('${next} 00:00+00')`);
  const step = 250_000;
  for (let done = 0; done < DROP_ROWS; done += step) {
    await pool.query(
      `INSERT INTO ${archiveTable} (outbox_id, message_id, type, exchange, routing_key, key, headers, payload, occurred_at, published_at)
       SELECT g, gen_random_uuid(), 'bench.event', 'bench', 'bench.event', 'k-' || (g % 1000), '{}'::jsonb, jsonb_build_object('n', g),
              timestamptz '${day} 00:00+00' + (g % 86400) * interval '1 second', timestamptz '${day} 00:00+00' + (g % 86400) * interval '1 second'
         FROM generate_series($1::bigint, $2::bigint) g`,
      [(day === '2020-01-01' ? 0 : DROP_ROWS) + done + 1, (day === '2020-01-01' ? 0 : DROP_ROWS) + Math.min(done + step, DROP_ROWS)],
    );
  }
}
await pool.query(`VACUUM ANALYZE ${archiveTable}`);
const timed = async (sql) => {
  const started = process.hrtime.bigint();
  const r = await pool.query(sql);
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, rows: r.rowCount };
};
const del = await timed(`DELETE FROM ${archiveTable} WHERE published_at >= '2020-01-01 00:00+00' AND published_at < '2020-01-02 00:00+00'`);
const detach = await timed(`ALTER TABLE ${archiveTable} DETACH PARTITION "${schema}"."outbox_archive_20200102"`);
const dropped = await timed(`DROP TABLE "${schema}"."outbox_archive_20200102"`);
await drop();
await admin.deleteQueue(queue);
await admin.deleteQueue(replayQueue);
await admin.deleteExchange(exchange);
await connection.close();
await pool.end();

const ratios = on.map((r, i) => r / off[i]);
const replayRatios = replay.map((r, i) => r / off[i]);
report(
  'archive',
  [
    { what: 'drain, archive off (baseline)', 'median': `${fmt(median(off))} msg/s`, runs: off.map((x) => fmt(x)).join(' / '), 'vs baseline (median of runs)': '1.00' },
    { what: 'drain, archive on', 'median': `${fmt(median(on))} msg/s`, runs: on.map((x) => fmt(x)).join(' / '), 'vs baseline (median of runs)': `${fmt(median(ratios), 2)} (${ratios.map((x) => fmt(x, 2)).join(' / ')})` },
    { what: 'history replay to one queue', 'median': `${fmt(median(replay))} msg/s`, runs: replay.map((x) => fmt(x)).join(' / '), 'vs baseline (median of runs)': `${fmt(median(replayRatios), 2)} (${replayRatios.map((x) => fmt(x, 2)).join(' / ')})` },
    { what: `DELETE of a day (${del.rows} rows), the baseline`, 'median': `${fmt(del.ms, 1)} ms`, runs: '1', 'vs baseline (median of runs)': '1' },
    { what: `DETACH PARTITION of a day (${DROP_ROWS} rows)`, 'median': `${fmt(detach.ms, 1)} ms`, runs: '1', 'vs baseline (median of runs)': fmt(detach.ms / del.ms, 5) },
    { what: `DROP TABLE of that partition`, 'median': `${fmt(dropped.ms, 1)} ms`, runs: '1', 'vs baseline (median of runs)': fmt(dropped.ms / del.ms, 5) },
  ],
  {
    command: `node bench/run.mjs archive (BENCH_RUNS=${RUNS} BENCH_ARCHIVE_COUNT=${COUNT} BENCH_ARCHIVE_DROP_ROWS=${DROP_ROWS})`,
    messages: `${COUNT} x 1 KiB, keyed (100 keys), relay defaults in this process, ${RUNS} runs alternating which goes first`,
    'load average at start': loadAtStart,
    'load average at end': loadAverage(),
    'drain on / off, median of per-run ratios': fmt(median(ratios), 2),
    'drop vs delete of a 1M-row day': `${fmt(detach.ms + dropped.ms, 1)} ms vs ${fmt(del.ms, 1)} ms`,
  },
);
