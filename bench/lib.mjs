// Shared helpers of the benchmarks: connections, a fresh schema, statistics, output.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { migrate } from '@mailroom/core';

export const databaseUrl = process.env.MAILROOM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const amqpUrl = process.env.MAILROOM_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** A random suffix for schemas, exchanges and queues. */
export const tag = () => randomBytes(4).toString('hex');

/** A fresh migrated schema; drop() removes it. */
export async function freshSchema(pool) {
  const schema = `bench_${tag()}`;
  await migrate(pool, { schema });
  return { schema, drop: () => pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`) };
}

export function newPool(max = 10) {
  const pool = new pg.Pool({ connectionString: databaseUrl, max });
  pool.on('error', () => undefined);
  return pool;
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function quantile(values, q) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

export const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : String(n));

/** Prints a table and a JSON line, and keeps the JSON in bench/results/. */
export function report(name, rows, summary) {
  const cols = Object.keys(rows[0] ?? {});
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  console.log(cols.map((c, i) => c.padEnd(widths[i])).join('  '));
  for (const r of rows) console.log(cols.map((c, i) => String(r[c]).padEnd(widths[i])).join('  '));
  console.log('');
  for (const [k, v] of Object.entries(summary)) console.log(`${k}: ${v}`);
  const json = JSON.stringify({ bench: name, at: new Date().toISOString(), node: process.version, rows, summary });
  console.log(`\nJSON ${json}`);
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL(`${name}.json`, dir), `${json}\n`);
}
