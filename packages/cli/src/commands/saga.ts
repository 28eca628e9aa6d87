import { parseArgs } from 'node:util';
import pg from 'pg';
import { SAGA_STATUSES, cleanupSagas, listSagas, readSaga, type SagaStatus } from '@mailroom/saga';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { DATABASE_ENV } from '../connection-env.js';
import { describeEnv, readEnv } from '../env.js';
import { jsonText, listText, parseDuration, showText } from './saga-text.js';

const USAGE = [
  'Usage: mailroom saga <list|show|cleanup> [options]',
  '',
  '  list [--status running|completed|failed] [--name N] [--stuck-for 10m] [--limit N] [--json]',
  '      saga instances, the most recently changed first; --stuck-for D: running instances no step',
  '      has moved for at least D (90s, 10m, 2h, 7d; with --status, that status), longest unchanged first',
  '  show <name> <id> [--history N] [--json]',
  '      one instance: its status, state and history (which message moved it from what to what,',
  '      when; the latest N entries, default 1000), oldest first',
  '  cleanup --older-than 30d [--dry-run] [--json]',
  '      removes instances that ended (completed or failed) at least that long ago, with their history;',
  '      running instances are never touched. Keep it longer than the inbox retention (7d by default):',
  '      a starting message redelivered after its instance is gone starts a new one. --dry-run counts',
  '      them and removes nothing. The role needs UPDATE and DELETE on sagas and DELETE on saga_history',
  '      (mailroom grants --operator ROLE --saga)',
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

/** The longest `--older-than`: 100 years (a longer cutoff is a typo, not a policy). */
const MAX_CLEANUP_AGE_MS = 100 * 365 * 86_400_000;

/** `--older-than` of `saga cleanup`: required, a duration from 1s to 100 years (0 would remove every ended instance at once). */
function cleanupAge(value: string | undefined): number {
  if (value === undefined) throw new UsageError('cleanup needs --older-than D: how long ago an instance must have ended to be removed (e.g. 30d)');
  const ms = parseDuration('--older-than', value);
  if (ms < 1000) throw new UsageError(`--older-than ${JSON.stringify(value)} is shorter than 1s: that would remove instances that just ended (use e.g. 30d)`);
  if (ms > MAX_CLEANUP_AGE_MS) throw new UsageError(`--older-than ${JSON.stringify(value)} is longer than 100 years`);
  return ms;
}

/** `mailroom saga …`: list saga instances, show one with its history, remove ended ones (through @mailroom/saga's API). */
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
            'older-than': { type: 'string' },
            'dry-run': { type: 'boolean' },
            json: { type: 'boolean' },
          },
        });
      } catch (error) {
        throw new UsageError(`${(error as Error).message} (see mailroom saga --help)`);
      }
    })();
    const allowed: Record<string, string[]> = {
      list: ['status', 'name', 'stuck-for', 'limit', 'json'],
      show: ['history', 'json'],
      cleanup: ['older-than', 'dry-run', 'json'],
    };
    if (sub === undefined || !Object.hasOwn(allowed, sub)) {
      throw new UsageError(`${sub === undefined ? 'missing subcommand' : `unknown subcommand ${JSON.stringify(sub.slice(0, 100))}`}: use list, show or cleanup (see --help)`);
    }
    const misplaced = Object.keys(values).filter((k) => !(allowed[sub] ?? []).includes(k));
    if (misplaced.length > 0) throw new UsageError(`${sub} does not take ${misplaced.map((k) => `--${k}`).join(', ')}`);
    if ((sub === 'list' || sub === 'cleanup') && positionals.length > 0) throw new UsageError(`${sub} takes no arguments (got ${positionals.join(' ')})`);
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
    const olderThanMs = sub === 'cleanup' ? cleanupAge(values['older-than']) : undefined;

    const vars = readEnv(env, DATABASE_ENV);
    const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 1, application_name: `mailroom-saga-${sub}` });
    pool.on('error', () => undefined);
    try {
      if (olderThanMs !== undefined) {
        const dryRun = values['dry-run'] === true;
        const count = await cleanupSagas(pool, { schema: vars.schema, olderThanMs, dryRun });
        const olderThan = values['older-than'] as string;
        if (json) stdout.write(`${JSON.stringify({ dryRun, olderThan, olderThanMs, [dryRun ? 'wouldRemove' : 'removed']: count })}\n`);
        else stdout.write(dryRun ? `would remove ${count} ended instance${count === 1 ? '' : 's'} older than ${olderThan} (dry run: nothing removed)\n` : `removed ${count} ended instance${count === 1 ? '' : 's'} older than ${olderThan}, with their history\n`);
        return 0;
      }
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
