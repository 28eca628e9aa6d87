// `mailroom saga list` and `mailroom saga show` against instances made by the saga's real steps.
// Runs the BUILT CLI (dist/main.js): `pnpm build` first.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import { defineMessage, migrate } from '@mailroom/core';
import { toExecutor } from '@mailroom/core/internal';
import { defineSaga, sagaHandlers } from '@mailroom/saga';
import { randomName, spawnNode, testUrls } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const { databaseUrl, amqpUrl } = testUrls();
const schema = randomName('mr');
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });

const Placed = defineMessage('cli.placed', z.object({ id: z.string() }));
const Paid = defineMessage('cli.paid', z.object({ id: z.string(), note: z.string() }));
const saga = defineSaga({
  name: 'cli-order',
  state: z.object({ status: z.string(), note: z.string() }),
  steps: (step) => [
    step(Placed, { starts: true, correlate: (p) => p.id, handle: async () => ({ status: 'placed', note: '' }) }),
    step(Paid, {
      correlate: (p) => p.id,
      async handle({ state, payload, complete }) {
        complete();
        return { ...state, status: 'paid', note: payload.note };
      },
    }),
  ],
});
const [placed, paid] = sagaHandlers(saga, { schema });

/** Runs one step the way the consumer does: in a transaction of its own. */
async function applyStep(binding: typeof placed, payload: unknown): Promise<string> {
  const messageId = randomUUID();
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await binding?.handle({
      payload,
      tx: client,
      db: toExecutor(client),
      signal: new AbortController().signal,
      message: {
        messageId,
        type: binding.contract.type,
        version: 1,
        key: null,
        headers: {},
        occurredAt: new Date(),
        attempt: 1,
        redelivered: false,
        exchange: 'mailroom',
        routingKey: binding.contract.type,
        consumer: 'cli-test',
        queue: 'cli-test',
      },
    });
    await client.query('COMMIT');
    return messageId;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

async function run(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(CLI, args, { MAILROOM_DATABASE_URL: databaseUrl, MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

// A bidi override is allowed in an instance id (it is no control character to PostgreSQL) and
// would make a terminal show text backwards; an escape sequence could only come from another writer.
const ids = { running: 'o-running', done: 'o-done', bidi: 'o-\u202egnp.exe', stuck: 'o-stuck' };
let paidMessage = '';

beforeAll(async () => {
  await migrate(pool, { schema });
  for (const id of Object.values(ids)) await applyStep(placed, { id });
  paidMessage = await applyStep(paid, { id: ids.done, note: 'paid \u001b[2J in full' });
  await pool.query(`UPDATE "${schema}".sagas SET updated_at = now() - interval '3 hours' WHERE id = $1`, [ids.stuck]);
  await pool.query(`INSERT INTO "${schema}".sagas (saga, id, state, version) VALUES ('cli-order', $1, '{"status":"\\u001b]0;owned\\u0007"}', 1)`, ['o-\u001b[31mred']);
});

afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
});

it('saga list: every instance, filtered by status, name and time unchanged; --json', async () => {
  const all = await run(['saga', 'list']);
  expect(all.code, all.output).toBe(0);
  expect(all.output).toMatch(/^SAGA +ID +STATUS +VERSION +UNCHANGED FOR +CREATED/);
  for (const id of [ids.running, ids.done, ids.stuck]) expect(all.output).toContain(id);
  // Nothing from an id reaches the terminal raw.
  expect(all.output).toContain('o-\\u202Egnp.exe');
  expect(all.output).toContain('o-\\x1B[31mred');
  expect(all.output).not.toMatch(/[\u001b\u202e]/);

  const completed = await run(['saga', 'list', '--status', 'completed', '--json']);
  expect(completed.code, completed.output).toBe(0);
  const rows = JSON.parse(completed.output) as Array<{ id: string; status: string; version: number; completedAt: string | null }>;
  expect(rows.map((r) => [r.id, r.status, r.version])).toEqual([[ids.done, 'completed', 2]]);
  expect(rows[0]?.completedAt).toMatch(/^\d{4}-/);

  const stuck = await run(['saga', 'list', '--stuck-for', '2h', '--json']);
  expect((JSON.parse(stuck.output) as Array<{ id: string }>).map((r) => r.id)).toEqual([ids.stuck]);
  expect((JSON.parse((await run(['saga', 'list', '--stuck-for', '4h', '--json'])).output) as unknown[]).length).toBe(0);
  expect((await run(['saga', 'list', '--name', 'other'])).output).toContain('no saga instances match');
  expect((JSON.parse((await run(['saga', 'list', '--name', 'cli-order', '--limit', '2', '--json'])).output) as unknown[]).length).toBe(2);
});

it('saga show: the instance, its state and its history; --json; an unknown instance exits 1', async () => {
  const shown = await run(['saga', 'show', 'cli-order', ids.done]);
  expect(shown.code, shown.output).toBe(0);
  expect(shown.output).toContain('status    completed (version 2)');
  expect(shown.output).toContain('"note": "paid \\u001b[2J in full"');
  expect(shown.output).toMatch(/#\d+ +\S+ +cli\.placed +[0-9a-f-]{36} +applied +\(new\) -> running v1/);
  expect(shown.output).toMatch(new RegExp(`#\\d+ +\\S+ +cli\\.paid +${paidMessage} +applied +running v1 -> completed v2`));
  expect(shown.output).not.toContain('\u001b');

  const json = await run(['saga', 'show', 'cli-order', ids.done, '--json']);
  const record = JSON.parse(json.output) as { status: string; state: unknown; history: Array<{ messageId: string; type: string; from: { version: number }; to: { version: number } }> };
  expect(record.status).toBe('completed');
  expect(record.state).toEqual({ status: 'paid', note: 'paid \u001b[2J in full' });
  expect(record.history.map((h) => [h.type, h.from.version, h.to.version])).toEqual([
    ['cli.placed', 0, 1],
    ['cli.paid', 1, 2],
  ]);

  // Written by another writer (a step refuses control characters in an id): shown escaped.
  const forged = await run(['saga', 'show', 'cli-order', 'o-\u001b[31mred']);
  expect(forged.code, forged.output).toBe(0);
  expect(forged.output).toContain('id        o-\\x1B[31mred');
  expect(forged.output).toContain('"status": "\\u001b]0;owned\\u0007"');
  expect(forged.output).not.toMatch(/[\u001b\u0007]/);
  const missing = await run(['saga', 'show', 'cli-order', 'nope', '--json']);
  expect(missing).toEqual({ code: 1, output: 'null\n' });
});

it('refuses bad usage with exit code 2, naming the problem', async () => {
  const cases: Array<[string[], string]> = [
    [['saga'], 'missing subcommand'],
    [['saga', 'purge'], 'unknown subcommand "purge"'],
    [['saga', 'list', '--stuck-for', 'forever'], '--stuck-for "forever" is not a duration'],
    [['saga', 'list', '--status', 'lost'], '--status must be one of running, completed, failed'],
    [['saga', 'list', '--limit', '0'], '--limit must be a positive integer'],
    [['saga', 'show', 'cli-order'], 'show takes a saga name and an instance id'],
    [['saga', 'show', 'cli-order', 'x', '--status', 'running'], 'show does not take --status'],
  ];
  for (const [args, text] of cases) {
    const result = await run(args);
    expect(result.code, args.join(' ')).toBe(2);
    expect(result.output).toContain(text);
  }
  const help = await run(['saga', '--help']);
  expect(help.output).toContain('Usage: mailroom saga <list|show|cleanup>');
});
