import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDeadLetterSink, createDeadLetterStore, DEFAULT_DEAD_LETTERS, type DeadLetter, type DeadLetterGroup } from '@mailroom/dlq';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { AMQP_VARS, DATABASE_VARS, declareEnv, describeEnv, readEnv } from '../env.js';

const SINK_VARS = declareEnv([
  { name: 'MAILROOM_DEAD_LETTER_EXCHANGE', description: 'dead-letter exchange consumers publish to', default: DEFAULT_DEAD_LETTERS },
  { name: 'MAILROOM_DEAD_LETTER_QUEUE', description: 'dead-letter queue the sink drains', default: DEFAULT_DEAD_LETTERS },
]);

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
  '                                (consumers do this themselves unless started with deadLetters.sink = false)',
  '',
  'Environment:',
].join('\n');

const DURATION = /^(\d+(?:\.\d+)?)(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function parseSince(value: string): Date {
  const age = DURATION.exec(value);
  if (age) return new Date(Date.now() - Number(age[1]) * (UNIT_MS[age[2] as string] ?? 0));
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new UsageError(`--since ${JSON.stringify(value)} is neither an age (30m, 2h, 7d) nor a date`);
  return date;
}

function toJson(dl: DeadLetter): Record<string, unknown> {
  return { ...dl, body: dl.body === null ? null : dl.body.toString('base64') };
}

function write(out: Writable, text: string): void {
  out.write(text.endsWith('\n') ? text : `${text}\n`);
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

function short(text: string | null, max = 60): string {
  if (text === null) return '';
  const line = text.replace(/\s+/g, ' ');
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function listText(rows: DeadLetter[]): string {
  if (rows.length === 0) return 'no dead letters';
  return table([
    ['ID', 'MESSAGE ID', 'SOURCE', 'TYPE', 'REASON', 'ATTEMPTS', 'LAST FAILED', 'REPLAYED', 'GROUP', 'ERROR'],
    ...rows.map((d) => [
      d.id,
      d.messageId,
      d.source,
      d.type ?? '-',
      d.reason,
      String(d.attempts),
      d.lastFailedAt.toISOString(),
      d.replayedAt ? 'yes' : 'no',
      d.fingerprint,
      short(d.error),
    ]),
  ]);
}

function groupsText(groups: DeadLetterGroup[]): string {
  if (groups.length === 0) return 'no dead letters';
  return table([
    ['GROUP', 'COUNT', 'PENDING', 'SOURCE', 'TYPE', 'REASON', 'LAST FAILED', 'SAMPLE ERROR'],
    ...groups.map((g) => [g.fingerprint, String(g.count), String(g.pending), g.source, g.type ?? '-', g.reason, g.lastFailedAt.toISOString(), short(g.sampleError)]),
  ]);
}

function showText(d: DeadLetter): string {
  const body = d.payload !== null ? JSON.stringify(d.payload, null, 2) : d.body !== null ? `(not JSON, ${d.body.length} bytes) ${short(d.body.toString('utf8'), 500)}` : '(none)';
  return [
    `id            ${d.id}`,
    `message id    ${d.messageId}`,
    `source        ${d.source}`,
    `type          ${d.type ?? '-'}`,
    `reason        ${d.reason}`,
    `error         ${d.error ?? '-'}`,
    `attempts      ${d.attempts}`,
    `first failed  ${d.firstFailedAt.toISOString()}`,
    `last failed   ${d.lastFailedAt.toISOString()}`,
    `replayed      ${d.replayedAt ? d.replayedAt.toISOString() : 'no'}`,
    `exchange      ${d.exchange ?? '-'}`,
    `routing key   ${d.routingKey ?? '-'}`,
    `key           ${d.key ?? '-'}`,
    `group         ${d.fingerprint}`,
    `headers       ${JSON.stringify(d.headers)}`,
    'payload',
    body,
  ].join('\n');
}

/** `mailroom dlq …`: inspect, replay and discard dead letters; run the sink. */
export const dlqCommand: Command = {
  name: 'dlq',
  summary: 'dead letters: list, show, groups, replay (through the outbox), discard, sink',
  help: () => `${USAGE}\n${describeEnv([...DATABASE_VARS, ...AMQP_VARS, ...SINK_VARS])}\n  (MAILROOM_AMQP_URL and the dead-letter names are read by \`sink\` only)`,
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

    const vars = readEnv(env, sub === 'sink' ? [...DATABASE_VARS, ...AMQP_VARS, ...SINK_VARS] : DATABASE_VARS);
    const pool = new pg.Pool({ connectionString: vars.MAILROOM_DATABASE_URL, max: 2, application_name: `mailroom-dlq-${sub}` });
    pool.on('error', () => undefined);
    const store = createDeadLetterStore({ db: pool, schema: vars.MAILROOM_SCHEMA });
    try {
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
        default: {
          const sink = createDeadLetterSink({
            db: pool,
            schema: vars.MAILROOM_SCHEMA,
            amqp: vars.MAILROOM_AMQP_URL as string,
            topology: { exchange: vars.MAILROOM_DEAD_LETTER_EXCHANGE, queue: vars.MAILROOM_DEAD_LETTER_QUEUE },
          });
          await sink.start();
          write(stdout, `draining ${vars.MAILROOM_DEAD_LETTER_QUEUE} into ${vars.MAILROOM_SCHEMA}.dead_letters; SIGTERM to stop`);
          if (!stopSignal.aborted) await new Promise<void>((resolve) => stopSignal.addEventListener('abort', () => resolve(), { once: true }));
          await sink.stop();
          write(stdout, `stopped after storing ${sink.stored} dead letter(s)`);
          return 0;
        }
      }
    } finally {
      await pool.end().catch(() => undefined);
    }
  },
};
