// `npx mailroom relay` given SIGTERM exits 143 without forwarding the signal (issue 9, defect 12):
// the relay must not outlive the process that started it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import pg from 'pg';
import { migrate } from '@mailroom/core';
import { randomName, testUrls } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const schema = randomName('mr');
const { databaseUrl, amqpUrl } = testUrls();
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
let dir: string;
const orphans: number[] = [];

beforeAll(async () => {
  await migrate(pool, { schema });
  dir = mkdtempSync(join(tmpdir(), 'mailroom-parent-'));
});
afterAll(async () => {
  // A relay that outlived its launcher (the test failed) must not outlive the test.
  for (const pid of orphans) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
  rmSync(dir, { recursive: true, force: true });
});

/** True while `pid` runs (a zombie counts as gone). */
function alive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (existsSync(stat)) return !/^\d+ \(.*\) Z /.test(readFileSync(stat, 'utf8'));
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

it('a relay whose launcher exits on SIGTERM without forwarding it (as npx does) stops gracefully by itself', async () => {
  const log = join(dir, 'relay.log');
  // The launcher: starts the relay with its output in a file, prints its pid, and on SIGTERM
  // exits 143 at once without telling its child, as npx does.
  const launcher = join(dir, 'launcher.mjs');
  writeFileSync(
    launcher,
    `import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
const out = openSync(${JSON.stringify(log)}, 'a');
const child = spawn(process.execPath, [${JSON.stringify(CLI)}, 'relay'], { stdio: ['ignore', out, out] });
process.stdout.write(JSON.stringify({ pid: child.pid }) + '\\n');
process.on('SIGTERM', () => process.exit(143));
setInterval(() => undefined, 1000);
`,
  );
  const parent = spawn(process.execPath, [launcher], {
    env: {
      ...process.env,
      MAILROOM_DATABASE_URL: databaseUrl,
      MAILROOM_AMQP_URL: amqpUrl,
      MAILROOM_SCHEMA: schema,
      MAILROOM_HTTP_HOST: '127.0.0.1',
      MAILROOM_HTTP_PORT: '0',
      MAILROOM_POLL_INTERVAL_MS: '200',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const parentExit = new Promise<number | null>((resolve) => parent.once('exit', (code) => resolve(code)));
  const pid = await vi.waitFor(
    () => {
      const match = /"pid":(\d+)/.exec(out);
      if (!match) throw new Error('no pid yet');
      return Number(match[1]);
    },
    { timeout: 10_000, interval: 20 },
  );
  orphans.push(pid);
  await vi.waitFor(() => expect(existsSync(log) && readFileSync(log, 'utf8')).toMatch(/relay started/), { timeout: 20_000, interval: 50 });

  parent.kill('SIGTERM');
  expect(await parentExit).toBe(143);
  // The relay notices it was orphaned and stops the way SIGTERM would have stopped it.
  await vi.waitFor(() => expect(alive(pid)).toBe(false), { timeout: 20_000, interval: 100 });
  const text = readFileSync(log, 'utf8');
  expect(text).toMatch(/the process that started the relay \(pid \d+\) exited: stopping/);
  expect(text).toContain('relay exited cleanly');
});
