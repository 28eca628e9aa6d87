// Shared helpers of the benchmarks: connections, a fresh schema, statistics, output.
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
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

/** Whole-machine CPU counters from /proc/stat: busy and total jiffies of all cores. */
function cpuTimes() {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
  return { busy: user + nice + system + irq + softirq + steal, total: user + nice + system + idle + iowait + irq + softirq + steal };
}

/**
 * Measures how busy the whole machine is (every process: the benchmark, PostgreSQL, RabbitMQ,
 * relays) between start and the returned stop(): a fraction of all cores, 0..1.
 */
export function machineBusy() {
  const start = cpuTimes();
  return () => {
    const end = cpuTimes();
    return (end.busy - start.busy) / Math.max(1, end.total - start.total);
  };
}

/** The 1-minute load average, printed with every result (the machine is shared). */
export const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) a live process has used, from /proc/<pid>/stat. */
export function processCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Peak and current resident memory of a live process in MB, from /proc/<pid>/status. */
export function processMemoryMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { peak: kb('VmHWM') / 1024, current: kb('VmRSS') / 1024 };
}

/**
 * Starts `node file` with `env` as a process of its own and resolves once it prints a line on
 * stdout (its "ready"); stop() sends SIGTERM and resolves at its exit.
 */
export async function startProcess(file, args, env) {
  const child = spawn(process.execPath, [file, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve);
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code} before it was ready`)));
  });
  child.stdout.resume();
  return {
    pid: child.pid,
    child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', resolve);
        child.kill('SIGTERM');
      }),
  };
}

/** A baseline relay of this folder (`file`, e.g. naive-relay.mjs) on `schema`, as a process of its own. */
function startBaselineRelay(file, schema, env) {
  return startProcess(fileURLToPath(new URL(file, import.meta.url)), [], {
    NAIVE_DATABASE_URL: databaseUrl,
    NAIVE_AMQP_URL: amqpUrl,
    NAIVE_SCHEMA: schema,
    ...env,
  });
}

/** The naive polling relay (bench/naive-relay.mjs) on `schema`, as a process of its own. */
export function startNaiveRelay(schema, env = {}) {
  return startBaselineRelay('./naive-relay.mjs', schema, env);
}

/** The trigger this baseline needs, for `schema` (quoted): it replaces migration 9's wake-up trigger. */
const notifyRelayTrigger = (schema) => `
CREATE OR REPLACE FUNCTION ${schema}.outbox_wake_relay() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
DECLARE r record; m text;
BEGIN
  FOR r IN SELECT i.id, i.message_id, i.type, i.exchange, i.routing_key, i.headers::text AS h, i.payload::text AS p,
      (extract(epoch FROM i.occurred_at) * 1000)::double precision AS o FROM inserted i ORDER BY i.id LOOP
    m := pg_catalog.json_build_object('i', r.id::text, 'm', r.message_id, 't', r.type, 'x', r.exchange, 'r', r.routing_key, 'o', r.o)::text
      || E'\\n' || r.h || E'\\n' || r.p;
    IF pg_catalog.octet_length(m) < 8000 THEN PERFORM pg_catalog.pg_notify('notify_relay_' || TG_TABLE_SCHEMA, m); END IF;
  END LOOP;
  RETURN NULL;
END $$;
DROP TRIGGER outbox_wake_relay ON ${schema}.outbox;
CREATE TRIGGER outbox_wake_relay AFTER INSERT ON ${schema}.outbox REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.outbox_wake_relay();`;

/**
 * The lower-bound relay (bench/notify-relay.mjs) on `schema`, as a process of its own: first
 * replaces the schema's wake-up trigger with one that puts each row into its NOTIFY. Only for a
 * schema of the benchmark's own, dropped afterwards.
 */
export async function startNotifyRelay(pool, schema, env = {}) {
  await pool.query(notifyRelayTrigger(`"${schema}"`));
  return startBaselineRelay('./notify-relay.mjs', schema, env);
}
