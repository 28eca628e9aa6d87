// Contracts: what validating through Standard Schema and upcasting cost per message, on the CPU
// only (no database, no broker). In the same run, interleaved, each for BENCH_CONTRACTS_OPS calls:
//   zod.safeParse     the zod schema's own safeParse: what `create` and `enqueue` called before
//                     contracts took any Standard Schema validator (the baseline);
//   contract.parse    the same schema through `~standard.validate`, as `parse` (and so `enqueue`) does now;
//   contract.create   a whole `create` (id, headers, limits check) of a one-version contract;
//   create v2         `create` of a two-version contract (writes the version into the envelope);
//   decode v2 as v2   a consumer's `decode` of a latest-version payload (async, no upcast);
//   decode v1 as v2   `decode` of a version-1 payload: v1 validated, upcast, v2 validated.
// Reports nanoseconds per call (median of BENCH_RUNS) and the ratio to zod.safeParse.
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { fmt, loadAverage, median, report } from './lib.mjs';

const OPS = Number(process.env.BENCH_CONTRACTS_OPS ?? 100_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

const v1Schema = z.object({ orderId: z.string(), customer: z.string(), total: z.number().nonnegative(), lines: z.array(z.object({ sku: z.string(), qty: z.number().int() })) });
const v2Schema = z.object({ orderId: z.string(), customer: z.object({ id: z.string() }), cents: z.number().int(), lines: z.array(z.object({ sku: z.string(), qty: z.number().int() })) });
const V1 = defineMessage('bench.order-placed', v1Schema);
const V2 = V1.version(2, v2Schema, (v1) => ({ orderId: v1.orderId, customer: { id: v1.customer }, cents: Math.round(v1.total * 100), lines: v1.lines }));
const lines = [
  { sku: 'a', qty: 1 },
  { sku: 'b', qty: 2 },
];
const p1 = { orderId: 'o-1', customer: 'c-1', total: 42.5, lines };
const p2 = { orderId: 'o-1', customer: { id: 'c-1' }, cents: 4250, lines };

const variants = {
  'zod.safeParse': () => {
    if (!v1Schema.safeParse(p1).success) throw new Error('invalid');
  },
  'contract.parse': () => V1.parse(p1),
  'contract.create': () => V1.create(p1),
  'create v2': () => V2.create(p2),
  'decode v2 as v2': () => V2.decode(p2, 2),
  'decode v1 as v2': () => V2.decode(p1, 1),
};

async function measure(fn) {
  // Warm-up outside the timed loop, so every variant is measured optimized.
  for (let i = 0; i < 2000; i++) await fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < OPS; i++) await fn();
  return Number(process.hrtime.bigint() - start) / OPS;
}

const loadAtStart = loadAverage();
const samples = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (let run = 0; run < RUNS; run++) {
  for (const [name, fn] of Object.entries(variants)) samples[name].push(await measure(fn));
}
const base = median(samples['zod.safeParse']);
const rows = Object.entries(samples).map(([variant, ns]) => ({
  variant,
  'ns/call (median)': fmt(median(ns)),
  runs: ns.map((n) => fmt(n)).join(' '),
  'x zod.safeParse': fmt(median(ns) / base, 2),
}));
report('contracts', rows, {
  ops: `${OPS} calls per run, ${RUNS} runs, interleaved`,
  note: 'every variant awaits each call (the sync ones too), so the loop overhead is the same for all',
  'load average': `${loadAtStart} at start, ${loadAverage()} at end`,
});
