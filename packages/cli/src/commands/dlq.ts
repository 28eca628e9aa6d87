import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createConsoleLogger } from '@mailroom/core';
import { createDeadLetterSink, createDeadLetterStore, deadLetterSinkOptionsSchema } from '@mailroom/dlq';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { DATABASE_ENV } from '../connection-env.js';
import { combineEnv, describeEnv, envSpec, readEnv, type EnvOf } from '../env.js';
import { cliActor, runDiscard } from './dlq-discard.js';
import { actionsText, groupsText, jsonText, listText, parseSince, replayText, showText, toJson, write } from './dlq-text.js';

// `sink` reads the sink's own options (the database handle and the logger aside) from the
// environment: names, defaults and --help come from the sink's schema.
const SINK_ENV = combineEnv(DATABASE_ENV, envSpec(deadLetterSinkOptionsSchema, { omit: ['db', 'logger', 'metrics'] }));

const USAGE = [
  'Usage: mailroom dlq <list|show|groups|replay|discard|audit|sink> [options]',
  '',
  '  list [--source S] [--type T] [--group G] [--since 2h|ISO] [--pending] [--limit N] [--json]',
  '      dead letters, newest failure first, with where a replay would go (--since: a time or an age: 30m, 2h, 7d)',
  '  show <id> [--json]            one dead letter by row id or message id: where a replay goes (or why it',
  '                                cannot), what the sink changed to store it, its payload',
  '  groups [--json]               failure groups (same cause) with counts, largest first',
  '  replay <id…> | --group G [--dry-run] [--force] [--json]',
  '      put dead letters back into the outbox in one transaction, keeping their message ids;',
  '      replaying twice has one effect (the inbox dedupes). A dead letter older than the shortest',
  '      inbox retention window (7 days when no consumer registered one) is refused unless --force.',
  '      Unsealed dead letters and those the sink changed to store them are never replayed.',
  '  discard <id…> | --group G [--dry-run] [--yes] [--json]',
  '      delete dead letters: --dry-run shows what would go; without --yes it asks on a terminal,',
  '      and refuses (deleting nothing) when there is no terminal to ask on',
  '  audit [--limit N] [--json]    who replayed or discarded what, and when (newest first)',
  '  sink                          drain the broker-side dead-letter queue into the store until SIGTERM',
  '                                (or hand a sink to each consumer: deadLetters.sink = createDeadLetterSink(…))',
  '',
  'Text output escapes every control character of message fields (\\x1B, \\x9B, \\u202E, \\n); --json is JSON.',
  '',
  'Environment:',
].join('\n');

/** `mailroom dlq …`: inspect, replay and discard dead letters; run the sink. */
export const dlqCommand: Command = {
  help: () => `${USAGE}\n${describeEnv(SINK_ENV)}\n  (MAILROOM_AMQP_URL and the MAILROOM_DEAD_LETTER_* variables are read by \`sink\` only)`,
  async run({ argv, env, stdout, stderr, stopSignal }) {
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
            yes: { type: 'boolean', short: 'y' },
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
      discard: ['group', 'dry-run', 'yes', 'json'],
      audit: ['limit', 'json'],
      sink: [],
    };
    if (sub === undefined || allowed[sub] === undefined) {
      throw new UsageError(`${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}: use list, show, groups, replay, discard, audit or sink (see --help)`);
    }
    const misplaced = Object.keys(values).filter((k) => !(allowed[sub] ?? []).includes(k));
    if (misplaced.length > 0) throw new UsageError(`${sub} does not take ${misplaced.map((k) => `--${k}`).join(', ')}`);
    if (['list', 'groups', 'audit', 'sink'].includes(sub) && positionals.length > 0) throw new UsageError(`${sub} takes no arguments (got ${positionals.join(' ')})`);
    const json = values.json === true;

    if (sub === 'sink') return runSink(readEnv(env, SINK_ENV), stdout, stopSignal);
    const vars = readEnv(env, DATABASE_ENV);
    const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 2, application_name: `mailroom-dlq-${sub}` });
    pool.on('error', () => undefined);
    try {
      const store = createDeadLetterStore({ db: pool, schema: vars.schema, actor: cliActor(env) });
      const limit = values.limit === undefined ? 100 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit must be a positive integer (got ${values.limit})`);
      switch (sub) {
        case 'list': {
          const rows = await store.list({
            source: values.source,
            type: values.type,
            group: values.group,
            since: values.since === undefined ? undefined : parseSince(values.since),
            pendingOnly: values.pending === true,
            limit,
          });
          write(stdout, json ? jsonText(rows.map(toJson)) : listText(rows));
          return 0;
        }
        case 'show': {
          if (positionals.length !== 1) throw new UsageError('show takes one id (a row id or a message id)');
          const dl = await store.show(positionals[0] as string);
          if (dl === undefined) {
            write(stdout, json ? 'null' : `no dead letter ${JSON.stringify(positionals[0])}`);
            return 1;
          }
          write(stdout, json ? jsonText(toJson(dl)) : showText(dl));
          return 0;
        }
        case 'groups': {
          const groups = await store.groups();
          write(stdout, json ? jsonText(groups) : groupsText(groups));
          return 0;
        }
        case 'replay': {
          if (positionals.length === 0 && values.group === undefined) throw new UsageError('replay needs ids or --group G');
          const result = await store.replay({ ids: positionals, group: values.group, dryRun: values['dry-run'] === true, force: values.force === true });
          write(stdout, json ? jsonText(result) : replayText(result));
          return 0;
        }
        case 'discard': {
          if (positionals.length === 0 && values.group === undefined) throw new UsageError('discard needs ids or --group G');
          if (values['dry-run'] === true && values.yes === true) throw new UsageError('discard takes --dry-run or --yes, not both');
          return await runDiscard(store, {
            selection: { ids: positionals, group: values.group },
            dryRun: values['dry-run'] === true,
            yes: values.yes === true,
            json,
            actor: cliActor(env),
            stdout,
            confirmIo: { input: process.stdin, output: stderr },
          });
        }
        case 'audit': {
          const actions = await store.actions({ limit });
          write(stdout, json ? jsonText(actions) : actionsText(actions));
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
    const sink = createDeadLetterSink({ ...sinkOptions, db: pool, logger: createConsoleLogger({ name: 'mailroom-dlq-sink' }) });
    await sink.start();
    write(stdout, `draining ${sink.queue} into ${sinkOptions.schema}.dead_letters (refused even minimally: ${sink.parkedQueue}); SIGTERM to stop`);
    if (!stopSignal.aborted) await once(stopSignal, 'abort');
    await sink.stop();
    const s = sink.stats;
    write(stdout, `stopped after storing ${s.stored} dead letter(s) (${s.minimal} minimally, ${s.changed} with changes, ${s.unsealed} unsealed); ${s.parked} parked, ${s.failures} failed tries`);
    return 0;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
