import { parseArgs } from 'node:util';
import pg from 'pg';
import { listHistory, maintainArchive, oldestArchived, readHistory, replayHistory } from '@mailroom/outbox';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { AMQP_ENV, DATABASE_ENV } from '../connection-env.js';
import { combineEnv, describeEnv, readEnv } from '../env.js';
import { parseSince } from './dlq-text.js';
import { historyJson, historyListText, historyShowText } from './history-text.js';

const REPLAY_ENV = combineEnv(DATABASE_ENV, AMQP_ENV);

const USAGE = [
  'Usage: mailroom history <list|show|replay|prune> [options]',
  '',
  '  The archive of published events (the relay keeps them with MAILROOM_ARCHIVE=true).',
  '',
  '  list [--type T] [--key K] [--since 2h|DATE] [--until DATE] [--limit N] [--json]',
  '      archived events, newest first (times are publish times)',
  '  show <message-id> [--json]',
  '      one archived event with its headers and payload',
  '  replay --queue Q [--since 7d|DATE] [--until DATE] [--type T] [--key K] [--rate N]',
  "      republishes archived events, with their message ids, to queue Q only (the default exchange,",
  "      publisher confirms), in outbox order; progress on stderr. A consumer's inbox dedupes what it",
  '      already handled; a new consumer rebuilds from scratch. --rate: at most N events per second',
  '      --type may be given more than once (any of those types; one replay keeps their outbox order)',
  '  prune [--retention-days 7] [--days-ahead 2]',
  '      creates the coming days\' partitions and drops the day partitions past retention (run',
  '      daily, as the owner of the tables)',
  '',
  'Environment:',
].join('\n');

function positive(option: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new UsageError(`${option} must be an integer from 1 to ${max} (got ${value})`);
  return n;
}

const ALLOWED: Record<string, string[]> = {
  list: ['type', 'key', 'since', 'until', 'limit', 'json'],
  show: ['json'],
  replay: ['queue', 'since', 'until', 'type', 'key', 'rate'],
  prune: ['retention-days', 'days-ahead'],
};

/** `mailroom history …`: list, show and replay archived events; prune the archive's partitions (through @mailroom/outbox). */
export const historyCommand: Command = {
  help: () => `${USAGE}\n${describeEnv(REPLAY_ENV)}\n  (MAILROOM_AMQP_URL is read by \`replay\` only)`,
  async run({ argv, env, stdout, stderr, stopSignal }) {
    const [sub, ...rest] = argv;
    const { values, positionals } = (() => {
      try {
        return parseArgs({
          args: rest,
          allowPositionals: true,
          strict: true,
          options: {
            type: { type: 'string', multiple: true },
            key: { type: 'string' },
            since: { type: 'string' },
            until: { type: 'string' },
            limit: { type: 'string' },
            queue: { type: 'string' },
            rate: { type: 'string' },
            'retention-days': { type: 'string' },
            'days-ahead': { type: 'string' },
            json: { type: 'boolean' },
          },
        });
      } catch (error) {
        throw new UsageError(`${(error as Error).message} (see mailroom history --help)`);
      }
    })();
    if (sub === undefined || ALLOWED[sub] === undefined) {
      throw new UsageError(`${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}: use list, show, replay or prune (see --help)`);
    }
    const misplaced = Object.keys(values).filter((k) => !(ALLOWED[sub] ?? []).includes(k));
    if (misplaced.length > 0) throw new UsageError(`${sub} does not take ${misplaced.map((k) => `--${k}`).join(', ')}`);
    if (sub === 'show' ? positionals.length !== 1 : positionals.length > 0) {
      throw new UsageError(sub === 'show' ? 'show takes one message id: mailroom history show <message-id>' : `${sub} takes no arguments (got ${positionals.join(' ')})`);
    }
    for (const name of ['key', 'queue'] as const) {
      if (values[name]?.includes('\u0000') === true) throw new UsageError(`--${name} must not contain NUL characters`);
    }
    if (values.type?.some((t) => t.includes('\u0000')) === true) throw new UsageError('--type must not contain NUL characters');
    const filter = {
      type: values.type,
      key: values.key,
      since: values.since === undefined ? undefined : parseSince(values.since),
      until: values.until === undefined ? undefined : parseSince(values.until),
    };
    const json = values.json === true;

    if (sub === 'replay') {
      if (values.queue === undefined || values.queue.length === 0) throw new UsageError('replay needs --queue Q: the one queue that receives the events');
      const rate = values.rate === undefined ? undefined : Number(values.rate.replace(/\/s$/, ''));
      if (rate !== undefined && !(Number.isFinite(rate) && rate > 0)) throw new UsageError(`--rate must be a positive number of events per second (got ${values.rate})`);
      const vars = readEnv(env, REPLAY_ENV);
      const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 1, application_name: 'mailroom-history-replay' });
      pool.on('error', () => undefined);
      try {
        const oldest = await oldestArchived(pool, { schema: vars.schema });
        if (filter.since !== undefined && oldest !== null && filter.since < oldest) {
          stderr.write(`note: --since ${filter.since.toISOString()} is older than the oldest archived event (${oldest.toISOString()}): events before it are past the retention window and cannot be replayed\n`);
        }
        const result = await replayHistory({
          database: pool,
          amqp: vars.amqpUrl,
          schema: vars.schema,
          queue: values.queue,
          ...filter,
          ratePerSecond: rate,
          signal: stopSignal,
          onProgress: (p) => stderr.write(`replayed ${p.published} events (${Math.round(p.ratePerSecond)}/s), up to outbox id ${p.lastOutboxId}\n`),
        });
        const summary = { queue: values.queue, published: result.published, lastOutboxId: result.lastOutboxId, oldestArchived: result.oldestArchived, beyondRetention: result.beyondRetention, aborted: result.aborted };
        stdout.write(`${historyJson(summary)}\n`);
        return result.aborted ? 1 : 0;
      } finally {
        await pool.end().catch(() => undefined);
      }
    }

    const vars = readEnv(env, DATABASE_ENV);
    const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 1, application_name: `mailroom-history-${sub}` });
    pool.on('error', () => undefined);
    try {
      if (sub === 'list') {
        const limit = positive('--limit', values.limit, 100, 10_000);
        const events = await listHistory(pool, { schema: vars.schema, ...filter, limit });
        stdout.write(`${json ? historyJson(events) : historyListText(events)}\n`);
        return 0;
      }
      if (sub === 'prune') {
        const result = await maintainArchive(pool, {
          schema: vars.schema,
          retentionDays: positive('--retention-days', values['retention-days'], 7, 36_500),
          daysAhead: values['days-ahead'] === '0' ? 0 : positive('--days-ahead', values['days-ahead'], 2, 366),
        });
        stdout.write(`${historyJson(result)}\n`);
        return 0;
      }
      const id = positionals[0] as string;
      const event = await readHistory(pool, id, { schema: vars.schema });
      if (event === undefined) {
        stdout.write(json ? 'null\n' : `no archived event ${historyJson(id)} (never archived, or past retention)\n`);
        return 1;
      }
      stdout.write(`${json ? historyJson(event) : historyShowText(event)}\n`);
      return 0;
    } finally {
      await pool.end().catch(() => undefined);
    }
  },
};
