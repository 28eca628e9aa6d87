import { parseArgs } from 'node:util';
import pg from 'pg';
import { SAGA_STATUSES, listSagas, readSaga, type SagaStatus } from '@mailroom/saga';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { DATABASE_ENV } from '../connection-env.js';
import { describeEnv, readEnv } from '../env.js';
import { jsonText, listText, parseDuration, showText } from './saga-text.js';

const USAGE = [
  'Usage: mailroom saga <list|show> [options]',
  '',
  '  list [--status running|completed|failed] [--name N] [--stuck-for 10m] [--limit N] [--json]',
  '      saga instances, the most recently changed first; --stuck-for D: running instances no step',
  '      has moved for at least D (90s, 10m, 2h, 7d; with --status, that status), longest unchanged first',
  '  show <name> <id> [--history N] [--json]',
  '      one instance: its status, state and history (which message moved it from what to what,',
  '      when; the latest N entries, default 1000), oldest first',
  '',
  'Text output escapes every control character of ids, types and states; --json is JSON.',
  '',
  'Environment:',
].join('\n');

function positive(option: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`${option} must be a positive integer (got ${value})`);
  return n;
}

/** `mailroom saga …`: list saga instances and show one with its history (read through @mailroom/saga's store API). */
export const sagaCommand: Command = {
  help: () => `${USAGE}\n${describeEnv(DATABASE_ENV)}`,
  async run({ argv, env, stdout }) {
    const [sub, ...rest] = argv;
    const { values, positionals } = (() => {
      try {
        return parseArgs({
          args: rest,
          allowPositionals: true,
          strict: true,
          options: {
            status: { type: 'string' },
            name: { type: 'string' },
            'stuck-for': { type: 'string' },
            limit: { type: 'string' },
            history: { type: 'string' },
            json: { type: 'boolean' },
          },
        });
      } catch (error) {
        throw new UsageError(`${(error as Error).message} (see mailroom saga --help)`);
      }
    })();
    const allowed: Record<string, string[]> = { list: ['status', 'name', 'stuck-for', 'limit', 'json'], show: ['history', 'json'] };
    if (sub === undefined || allowed[sub] === undefined) {
      throw new UsageError(`${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}: use list or show (see --help)`);
    }
    const misplaced = Object.keys(values).filter((k) => !(allowed[sub] ?? []).includes(k));
    if (misplaced.length > 0) throw new UsageError(`${sub} does not take ${misplaced.map((k) => `--${k}`).join(', ')}`);
    if (sub === 'list' && positionals.length > 0) throw new UsageError(`list takes no arguments (got ${positionals.join(' ')})`);
    if (sub === 'show' && positionals.length !== 2) throw new UsageError('show takes a saga name and an instance id: mailroom saga show <name> <id>');
    if (values.status !== undefined && !(SAGA_STATUSES as readonly string[]).includes(values.status)) {
      throw new UsageError(`--status must be one of ${SAGA_STATUSES.join(', ')} (got ${values.status})`);
    }
    const limit = positive('--limit', values.limit, 100);
    if (limit > 10_000) throw new UsageError(`--limit must be at most 10000 (got ${limit})`);
    const historyLimit = positive('--history', values.history, 1000);
    if (historyLimit > 100_000) throw new UsageError(`--history must be at most 100000 (got ${historyLimit})`);
    const stuckForMs = values['stuck-for'] === undefined ? undefined : parseDuration('--stuck-for', values['stuck-for']);
    const json = values.json === true;

    const vars = readEnv(env, DATABASE_ENV);
    const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 1, application_name: `mailroom-saga-${sub}` });
    pool.on('error', () => undefined);
    try {
      if (sub === 'list') {
        const rows = await listSagas(pool, { schema: vars.schema, name: values.name, status: values.status as SagaStatus | undefined, stuckForMs, limit });
        stdout.write(`${json ? jsonText(rows) : listText(rows)}\n`);
        return 0;
      }
      const [name, id] = positionals as [string, string];
      const record = await readSaga(pool, name, id, { schema: vars.schema, historyLimit });
      if (record === undefined) {
        stdout.write(json ? 'null\n' : `no instance ${jsonText(id)} of saga ${jsonText(name)}\n`);
        return 1;
      }
      stdout.write(`${json ? jsonText(record) : showText(record)}\n`);
      return 0;
    } finally {
      await pool.end().catch(() => undefined);
    }
  },
};
