// Issue 13, must show 2: the dead-letter list stays fast at a million rows. One million dead
// letters (generate_series: 5 sources, 10 types, 40 failure groups and one outage, over 30 days) in a
// fresh schema; then, through the store's public API (`store.page`, what the workbench calls),
// the first page, filtered pages (a failure group in the last 7 days; an outage's group of 5 % of
// the rows, all 24 days old), a page 200 pages deep by keyset, pages filtered by source and type or
// by text, and a filter that matches nothing; each the median of BENCH_RUNS reads.
// Target: the first page and the filtered page each under 300 ms.
// Env: BENCH_DLQ_ROWS (default 1000000), BENCH_RUNS (default 7), BENCH_DLQ_PAGE (default 50).
import { createDeadLetterStore } from '@mailroom/dlq';
import { fmt, freshSchema, loadAverage, median, newPool, report } from './lib.mjs';

const ROWS = Number(process.env.BENCH_DLQ_ROWS ?? 1_000_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const PAGE = Number(process.env.BENCH_DLQ_PAGE ?? 50);
const TARGET_MS = 300;

const loadAtStart = loadAverage();
const pool = newPool(4);
const { schema, drop } = await freshSchema(pool);
try {
  const began = performance.now();
  // A few big statements: one INSERT … SELECT per 250k rows keeps each transaction short.
  const CHUNK = 250_000;
  for (let from = 1; from <= ROWS; from += CHUNK) {
    const to = Math.min(ROWS, from + CHUNK - 1);
    await pool.query(
      `INSERT INTO "${schema}".dead_letters
         (message_id, source, reason, error, attempts, first_failed_at, last_failed_at, type, exchange, routing_key, key, headers, payload, fingerprint)
       SELECT gen_random_uuid(),
         (ARRAY['billing', 'shipping', 'relay', 'inventory', 'mailer'])[1 + g % 5],
         (ARRAY['non-retryable', 'max-attempts', 'invalid-payload', 'unroutable'])[1 + g % 4],
         'Error: order ' || g || ' failed: ' || (ARRAY['card declined', 'no address', 'timeout calling tax service', 'schema mismatch'])[1 + g % 4],
         1 + g % 5,
         t - interval '1 minute', t,
         'order.event' || (g % 10), 'orders', 'order.event' || (g % 10), 'customer-' || (g % 1000),
         '{"x-mailroom-occurred-at": "2026-01-01T00:00:00.000Z"}'::jsonb,
         jsonb_build_object('orderId', 'o-' || g, 'total', g % 997, 'lines', jsonb_build_array(jsonb_build_object('sku', 'sku-' || (g % 50), 'qty', 1 + g % 3))),
         -- One outage: 5 % of the rows, all in one stretch about 24 days ago, are a group of their own.
         CASE WHEN g > $3::int * 0.80 AND g <= $3::int * 0.85 THEN 'outage-24d' ELSE 'group-' || lpad((g % 40)::text, 2, '0') END
       FROM generate_series($1::int, $2::int) AS g,
         LATERAL (SELECT now() - (g::float8 / $3::float8) * interval '30 days' AS t) AS times`,
      [from, to, ROWS],
    );
  }
  await pool.query(`ANALYZE "${schema}".dead_letters`);
  const plantedSeconds = (performance.now() - began) / 1000;
  console.log(`planted ${ROWS.toLocaleString('en')} dead letters in ${fmt(plantedSeconds, 1)} s; load average ${loadAverage()}`);

  const store = createDeadLetterStore({ db: pool, schema, actor: 'bench' });
  // The cursor of a page 200 pages deep, found once (walking there is not what is measured).
  let deepCursor;
  {
    let after;
    for (let i = 0; i < 200; i++) {
      const page = await store.page({ limit: PAGE, ...(after === undefined ? {} : { after }) });
      after = page.next;
    }
    deepCursor = after;
  }
  const since7d = new Date(Date.now() - 7 * 86_400_000);
  const cases = [
    { name: 'first page (no filter)', options: { limit: PAGE }, target: true },
    { name: 'filtered page (group-07, last 7 days)', options: { group: 'group-07', since: since7d, limit: PAGE }, target: true },
    { name: 'filtered page (an outage group of 50,000, 24 days ago)', options: { group: 'outage-24d', limit: PAGE }, target: true },
    { name: 'page 201 by keyset (no filter)', options: { limit: PAGE, after: deepCursor }, target: false },
    { name: 'filtered page (source + type)', options: { source: 'shipping', type: 'order.event1', limit: PAGE }, target: false },
    // The worst case of a filter: it matches nothing, so the index range of the source is read to its end.
    { name: 'filter matching nothing (source + type)', options: { source: 'shipping', type: 'order.event3', limit: PAGE }, target: false },
    { name: 'filtered page (text in error, last 7 days)', options: { text: 'tax service', since: since7d, limit: PAGE }, target: false },
  ];
  const rows = [];
  const verdicts = [];
  for (const c of cases) {
    await store.page(c.options); // warm: the first read of a plan is not what an operator sees twice
    const times = [];
    let count = 0;
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      const page = await store.page(c.options);
      times.push(performance.now() - t0);
      count = page.deadLetters.length;
    }
    const med = median(times);
    if (c.target) verdicts.push(`${c.name}: ${fmt(med, 1)} ms ${med < TARGET_MS ? '<' : '>='} ${TARGET_MS} ms`);
    rows.push({
      case: c.name,
      'rows on page': count,
      'median ms': fmt(med, 1),
      'per run ms': times.map((t) => fmt(t, 1)).join(' / '),
      target: c.target ? `< ${TARGET_MS} ms: ${med < TARGET_MS ? 'met' : 'NOT MET'}` : '',
    });
  }
  report('dead-letter-list', rows, {
    load: `${ROWS.toLocaleString('en')} dead letters, pages of ${PAGE}, ${RUNS} reads each after one warm-up, medians (store.page of @mailroom/dlq)`,
    command: 'node bench/run.mjs dead-letter-list',
    'planting (generate_series + indexes of migration 10)': `${fmt(plantedSeconds, 1)} s`,
    verdicts: verdicts.join('; '),
    'load average at start': loadAtStart,
    'load average at end': loadAverage(),
    targets: `first page and filtered page each < ${TARGET_MS} ms at 1,000,000 rows`,
  });
  if (verdicts.some((v) => v.includes('>='))) process.exitCode = 1;
} finally {
  await drop();
  await pool.end();
}
