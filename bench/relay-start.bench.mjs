// Relay start-up: the CPU a relay process spends from exec to ready, against, in the same run:
// - bare Node (`node -e`, printing its ready line at once): what any Node process costs,
// - the naive relay (bench/naive-relay.mjs): pg + amqplib, both connections open, then "ready".
// The mailroom relay is the sidecar (`node packages/cli/dist/main.js relay`, defaults but
// MAILROOM_HTTP_PORT=0 and MAILROOM_LOG_LEVEL=warn) on a migrated schema, read twice: at its first
// stdout line (`{"event":"listening"}`, what bench/outbox-drain.bench.mjs calls ready) and once
// /readyz answers 200 (both links connected; polled every 20 ms). A row for MAILROOM_SEMI_SPACE_MB=0
// shows what the re-exec at start costs. CPU is user + system from /proc/<pid>/stat (10 ms ticks,
// every thread, the exec'd image before a re-exec included), so medians of BENCH_RUNS (9) fresh
// starts per variant, interleaved; per-run ratios against the naive relay of the same run.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { amqpUrl, databaseUrl, fmt, freshSchema, loadAverage, median, newPool, processCpuSeconds, report } from './lib.mjs';

const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const NAIVE = fileURLToPath(new URL('./naive-relay.mjs', import.meta.url));
const loadAtStart = loadAverage();

const pool = newPool(2);
const { schema, drop } = await freshSchema(pool);

/**
 * Starts `node ...args` and resolves with the CPU seconds it used when it printed its first line
 * on stdout and, when `readyUrl(port)` is given, when that URL first answered 200; then stops it.
 */
async function startOnce(args, env, readyUrl) {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const line = await new Promise((resolve, reject) => {
      let text = '';
      child.stdout.on('data', (chunk) => {
        text += chunk;
        if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')));
      });
      child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code} before it was ready`)));
    });
    const atLine = processCpuSeconds(child.pid);
    let atReady;
    if (readyUrl) {
      const url = readyUrl(JSON.parse(line).port);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const res = await fetch(url).catch(() => undefined);
        await res?.text();
        if (res?.status === 200) break;
        if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within 30 s`);
        await sleep(20);
      }
      atReady = processCpuSeconds(child.pid);
    }
    return { atLine, atReady };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const relayEnv = { MAILROOM_DATABASE_URL: databaseUrl, MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema, MAILROOM_HTTP_PORT: '0', MAILROOM_LOG_LEVEL: 'warn' };
const readyz = (port) => `http://127.0.0.1:${port}/readyz`;
const variants = [
  { name: 'node -e (prints ready at once)', start: () => startOnce(['-e', "process.stdout.write('ready\\n'); setInterval(() => {}, 1e6)"], {}) },
  { name: 'naive relay (both connections open)', start: () => startOnce([NAIVE], { NAIVE_DATABASE_URL: databaseUrl, NAIVE_AMQP_URL: amqpUrl, NAIVE_SCHEMA: schema }) },
  { name: 'mailroom relay (defaults)', start: () => startOnce([CLI, 'relay'], relayEnv, readyz) },
  { name: 'mailroom relay, MAILROOM_SEMI_SPACE_MB=0 (no re-exec)', start: () => startOnce([CLI, 'relay'], { ...relayEnv, MAILROOM_SEMI_SPACE_MB: '0' }, readyz) },
];

// One start of each first, not counted (the files in the page cache, the broker's first connection).
for (const v of variants) await v.start();
const samples = variants.map(() => []);
for (let run = 0; run < RUNS; run++) {
  for (const [i, v] of variants.entries()) samples[i].push(await v.start());
  process.stderr.write(`run ${run + 1}/${RUNS} done\n`);
}
await drop();
await pool.end();

const naive = samples[1].map((s) => s.atLine);
const ratioText = (list) => {
  const ratios = list.map((s, run) => s / naive[run]);
  return `${fmt(median(ratios), 2)} (${ratios.map((x) => fmt(x, 2)).join(' ')})`;
};
const rows = variants.map((v, i) => {
  const line = samples[i].map((s) => s.atLine);
  const ready = samples[i].map((s) => s.atReady).filter((s) => s !== undefined);
  return {
    what: v.name,
    'CPU s at first line (median)': fmt(median(line), 3),
    runs: line.map((s) => fmt(s, 2)).join(' '),
    'x naive (median of runs)': ratioText(line),
    'CPU s at /readyz 200 (median)': ready.length > 0 ? fmt(median(ready), 3) : '-',
  };
});
const mailroomLine = median(samples[2].map((s) => s.atLine));
report('relay-start', rows, {
  command: `node bench/run.mjs relay-start (BENCH_RUNS=${RUNS})`,
  starts: `${RUNS} fresh starts per variant, interleaved, after one uncounted start of each; CPU = user + system of the process, 10 ms ticks`,
  'load average': `${loadAtStart} at start, ${loadAverage()} at end`,
  'mailroom relay start CPU s, at its first line': `${fmt(mailroomLine, 3)} (target <= 0.15)`,
});
