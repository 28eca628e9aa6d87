import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDeadLetterSink, createDeadLetterStore, deadLetterSinkOptionsSchema } from '@mailroom/dlq';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { DATABASE_ENV } from '../connection-env.js';
import { combineEnv, describeEnv, envSpec, readEnv, type EnvOf } from '../env.js';
import { groupsText, listText, parseSince, showText, toJson, write } from './dlq-text.js';

// `sink` reads the sink's own options (the database handle and the logger aside) from the
// environment: names, defaults and --help come from the sink's schema.
const SINK_ENV = combineEnv(DATABASE_ENV, envSpec(deadLetterSinkOptionsSchema, { omit: ['db', 'logger'] }));

const USAGE = [
  'Usage: mailroom dlq <list|show|groups|replay|discard|sink> [options]',
  '',
  '  list [--source S] [--type T] [--group G] [--since 2h|ISO] [--pending] [--limit N] [--json]',
  '      dead letters, newest failure first (--since takes a time or an age: 30m, 2h, 7d)',
  '  show <id> [--json]            one dead letter by row id or message id, with its payload',
  '  groups [--json]               failure groups (same cause) with counts, largest first',
  '  replay <id…> | --group G [--dry-run] [--force] [--json]',
  '      put dead letters back into the outbox in one transaction, keeping their message ids;',
  '      replaying twice has one effect (the inbox dedupes). A dead letter older than the',
  '      shortest inbox retention window is refused unless --force: a consumer may have forgotten it.',
  '  discard <id…> | --group G [--json]   delete dead letters',
  '  sink                          drain the broker-side dead-letter queue into the store until SIGTERM',
  '                                (or hand a sink to each consumer: deadLetters.sink = createDeadLetterSink(…))',
  '',
  'Environment:',
].join('\n');

/** `mailroom dlq …`: inspect, replay and discard dead letters; run the sink. */
export const dlqCommand: Command = {
  name: 'dlq',
  summary: 'dead letters: list, show, groups, replay (through the outbox), discard, sink',
  help: () => `${USAGE}\n${describeEnv(SINK_ENV)}\n  (MAILROOM_AMQP_URL and the MAILROOM_DEAD_LETTER_* variables are read by \`sink\` only)`,
  async run({ argv, env, stdout, stopSignal }) {
    const [sub, ...rest] = argv;
    const { values, positionals } = (() => {
      try {
        return parseArgs({
          args: rest,
          allowPositionals: true,
          strict: true,
          options: {
            source: { type: 'string' },
            type: { type: 'string' },
            group: { type: 'string' },
            since: { type: 'string' },
            limit: { type: 'string' },
            pending: { type: 'boolean' },
            json: { type: 'boolean' },
            'dry-run': { type: 'boolean' },
            force: { type: 'boolean' },
          },
        });
      } catch (error) {
        throw new UsageError(`${(error as Error).message} (see mailroom dlq --help)`);
      }
    })();
    const allowed: Record<string, string[]> = {
      list: ['source', 'type', 'group', 'since', 'limit', 'pending', 'json'],
      show: ['json'],
      groups: ['json'],
      replay: ['group', 'dry-run', 'force', 'json'],
      discard: ['group', 'json'],
      sink: [],
    };
    if (sub === undefined || allowed[sub] === undefined) {
      throw new UsageError(`${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}: use list, show, groups, replay, discard or sink (see --help)`);
    }
    const misplaced = Object.keys(values).filter((k) => !(allowed[sub] ?? []).includes(k));
    if (misplaced.length > 0) throw new UsageError(`${sub} does not take ${misplaced.map((k) => `--${k}`).join(', ')}`);
    if (['list', 'groups', 'sink'].includes(sub) && positionals.length > 0) throw new UsageError(`${sub} takes no arguments (got ${positionals.join(' ')})`);
    const json = values.json === true;

    if (sub === 'sink') return runSink(readEnv(env, SINK_ENV), stdout, stopSignal);
    const vars = readEnv(env, DATABASE_ENV);
    const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 2, application_name: `mailroom-dlq-${sub}` });
    pool.on('error', () => undefined);
    try {
      const store = createDeadLetterStore({ db: pool, schema: vars.schema });
      switch (sub) {
        case 'list': {
          const limit = values.limit === undefined ? 100 : Number(values.limit);
          if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit must be a positive integer (got ${values.limit})`);
          const rows = await store.list({
            source: values.source,
            type: values.type,
            group: values.group,
            since: values.since === undefined ? undefined : parseSince(values.since),
            pendingOnly: values.pending === true,
            limit,
          });
          write(stdout, json ? JSON.stringify(rows.map(toJson)) : listText(rows));
          return 0;
        }
        case 'show': {
          if (positionals.length !== 1) throw new UsageError('show takes one id (a row id or a message id)');
          const dl = await store.show(positionals[0] as string);
          if (dl === undefined) {
            write(stdout, json ? 'null' : `no dead letter ${positionals[0]}`);
            return 1;
          }
          write(stdout, json ? JSON.stringify(toJson(dl)) : showText(dl));
          return 0;
        }
        case 'groups': {
          const groups = await store.groups();
          write(stdout, json ? JSON.stringify(groups) : groupsText(groups));
          return 0;
        }
        case 'replay': {
          if (positionals.length === 0 && values.group === undefined) throw new UsageError('replay needs ids or --group G');
          const result = await store.replay({ ids: positionals, group: values.group, dryRun: values['dry-run'] === true, force: values.force === true });
          if (json) {
            write(stdout, JSON.stringify(result));
          } else {
            write(stdout, `${result.dryRun ? 'would replay' : 'replayed'} ${result.count} message(s)${result.messageIds.length > 0 ? `: ${result.messageIds.join(' ')}` : ''}`);
            for (const s of result.skipped) write(stdout, `skipped ${s.id}${s.messageId === '' ? '' : ` (${s.messageId})`}: ${s.why}`);
          }
          return 0;
        }
        case 'discard': {
          if (positionals.length === 0 && values.group === undefined) throw new UsageError('discard needs ids or --group G');
          const count = await store.discard({ ids: positionals, group: values.group });
          write(stdout, json ? JSON.stringify({ count }) : `discarded ${count} dead letter(s)`);
          return 0;
        }
        default:
          throw new UsageError(`unknown subcommand "${sub}"`);
      }
    } finally {
      await pool.end().catch(() => undefined);
    }
  },
};

/** `dlq sink`: drains the dead-letter queue into the store until SIGTERM. */
async function runSink(options: EnvOf<typeof SINK_ENV>, stdout: Writable, stopSignal: AbortSignal): Promise<number> {
  const { databaseUrl, ...sinkOptions } = options;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2, application_name: 'mailroom-dlq-sink' });
  pool.on('error', () => undefined);
  try {
    const sink = createDeadLetterSink({ ...sinkOptions, db: pool });
    await sink.start();
    write(stdout, `draining ${sink.queue} into ${sinkOptions.schema}.dead_letters; SIGTERM to stop`);
    if (!stopSignal.aborted) await once(stopSignal, 'abort');
    await sink.stop();
    write(stdout, `stopped after storing ${sink.stats.stored} dead letter(s)`);
    return 0;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
