import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it, vi } from 'vitest';
import pg from 'pg';
import { randomName, spawnNode, testUrls } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const { databaseUrl, amqpUrl } = testUrls();
const schema = randomName('mr');
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });

afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
});

async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(CLI, args, { MAILROOM_DATABASE_URL: databaseUrl, MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema, ...env });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

async function tables(): Promise<string[]> {
  const result = await pool.query<{ t: string }>(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, [schema]);
  return result.rows.map((r) => r.t);
}

it('migrate --dry-run prints the SQL and applies nothing; migrate applies it once; doctor checks it all', async () => {
  const before = await run(['doctor']);
  expect(before.code).toBe(1);
  expect(before.output).toContain(`FAIL  schema "${schema}" is not migrated: "${schema}".outbox does not exist`);
  expect(before.output).toContain('fix: run `mailroom migrate`');

  const dry = await run(['migrate', '--dry-run']);
  expect(dry.code).toBe(0);
  expect(dry.output).toContain('-- migration 1: outbox');
  expect(dry.output).toContain(`CREATE TABLE "${schema}".outbox`);
  expect(await tables()).toEqual([]);

  const first = await run(['migrate']);
  expect(first.code).toBe(0);
  expect(first.output).toContain('applied migration 1: outbox');
  expect(await tables()).toContain('outbox');
  const again = await run(['migrate']);
  expect(again.output).toMatch(/is up to date/);

  const doctor = await run(['doctor']);
  expect(doctor.code).toBe(0);
  expect(doctor.output).toMatch(/ok {4}PostgreSQL \d+/);
  expect(doctor.output).toMatch(/ok {4}RabbitMQ/);
});

it('prints the whole migration script without a database, and refuses bad input clearly', async () => {
  const script = await run(['migrate', '--print-sql'], { MAILROOM_DATABASE_URL: '' });
  expect(script.code).toBe(0);
  expect(script.output).toContain(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  expect(script.output).toContain(`INSERT INTO "${schema}".mailroom_migrations (id, name) VALUES (1, 'outbox')`);

  const typo = await run(['migrate'], { MAILROOM_SHCEMA: 'x' });
  expect(typo.code).toBe(1);
  expect(typo.output).toContain('unknown variable MAILROOM_SHCEMA');

  const unknown = await run(['nope']);
  expect(unknown.code).toBe(2);
  expect(unknown.output).toContain('unknown command "nope"');

  const help = await run(['relay', '--help']);
  expect(help.code).toBe(0);
  for (const name of ['MAILROOM_DATABASE_URL', 'MAILROOM_AMQP_URL', 'MAILROOM_HTTP_PORT', 'MAILROOM_ORDERING', 'MAILROOM_BATCH_SIZE']) {
    expect(help.output).toContain(name);
  }
  expect(help.output).toContain('(default: 500)');

  const badNumber = await run(['relay'], { MAILROOM_BATCH_SIZE: 'lots' });
  expect(badNumber.code).toBe(1);
  expect(badNumber.output).toContain('MAILROOM_BATCH_SIZE must be a whole number');
});

it('the relay sidecar runs with a capped young generation, re-executed in place (same pid), unless MAILROOM_SEMI_SPACE_MB=0', async () => {
  const cmdlineOf = async (env: Record<string, string>): Promise<string[]> => {
    const child = spawnNode(CLI, ['relay'], { MAILROOM_DATABASE_URL: databaseUrl, MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema, MAILROOM_HTTP_PORT: '0', MAILROOM_LOG_LEVEL: 'warn', ...env });
    try {
      // Ready once it printed its line (after the re-exec, if any): the pid is the one spawned.
      await vi.waitFor(() => expect(child.output()).not.toBe(''), { timeout: 15_000, interval: 20 });
      return readFileSync(`/proc/${child.process.pid}/cmdline`, 'utf8').split('\0');
    } finally {
      child.kill('SIGTERM');
      expect((await child.exited).code, child.output()).toBe(0);
    }
  };
  await run(['migrate']);
  expect(await cmdlineOf({})).toContain('--max-semi-space-size=4');
  expect(await cmdlineOf({ MAILROOM_SEMI_SPACE_MB: '8' })).toContain('--max-semi-space-size=8');
  expect((await cmdlineOf({ MAILROOM_SEMI_SPACE_MB: '0' })).some((a) => a.startsWith('--max-semi-space-size'))).toBe(false);
});

