import pg from 'pg';
import { z } from 'zod/v4';
import { describeError, redactUrl } from '@mailroom/core';
import { quoteIdentifier, renderMigrations, validateIdentifier } from '@mailroom/core/internal';
import { readOutboxOverview } from '@mailroom/outbox';
import { PLUGIN_EXCHANGE_TYPES, checkBroker } from '../broker-checks.js';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { AMQP_TLS_ENV, DATABASE_ENV, amqpConnectionOptions, splitAmqpUrls } from '../connection-env.js';
import { formatCheck, type DoctorCheck } from '../doctor-check.js';
import { combineEnv, describeEnv, envSpec, readEnv } from '../env.js';

/** The broker URL is optional here: without it the doctor checks the database alone. */
const doctorEnvSchema = z.strictObject({
  /** MAILROOM_AMQP_URL. */
  amqpUrl: z.string().min(1).optional().meta({ description: 'RabbitMQ URL(s), comma-separated; unset: the broker checks are skipped' }),
});

const DOCTOR_ENV = combineEnv(combineEnv(DATABASE_ENV, envSpec(doctorEnvSchema)), AMQP_TLS_ENV);

/** Names a RabbitMQ permission pattern can allow: letters, digits and `.-_:`, at most 200 characters. */
const PREFIX = /^[A-Za-z0-9._:-]{1,200}$/;

interface DoctorArgs {
  json: boolean;
  prefix: string;
  plugins: string[];
}

function parseArgs(argv: readonly string[]): DoctorArgs {
  const args: DoctorArgs = { json: false, prefix: 'mailroom.', plugins: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (flag: string): string => {
      const inline = a.startsWith(`${flag}=`) ? a.slice(flag.length + 1) : undefined;
      if (inline !== undefined) return inline;
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${flag} needs a value`);
      return next;
    };
    if (a === '--json') args.json = true;
    else if (a === '--prefix' || a.startsWith('--prefix=')) args.prefix = value('--prefix');
    else if (a === '--plugin' || a.startsWith('--plugin=')) args.plugins.push(...value('--plugin').split(',').map((p) => p.trim()).filter((p) => p !== ''));
    else throw new UsageError(`unknown argument ${JSON.stringify(a)} (see --help)`);
  }
  if (!PREFIX.test(args.prefix) || args.prefix.startsWith('amq.')) {
    throw new UsageError(`--prefix must be 1 to 200 of A-Z a-z 0-9 . - _ : and not start with "amq." (RabbitMQ reserves it), got ${JSON.stringify(args.prefix.slice(0, 200))}`);
  }
  const unknown = args.plugins.filter((p) => PLUGIN_EXCHANGE_TYPES[p] === undefined);
  if (unknown.length > 0) {
    throw new UsageError(`cannot check plugin ${unknown.map((p) => JSON.stringify(p.slice(0, 100))).join(', ')}: known are ${Object.keys(PLUGIN_EXCHANGE_TYPES).join(', ')}`);
  }
  return args;
}

/** The outbox's backlog and the relays that hold it, as one check. */
async function checkOutbox(pool: pg.Pool, schema: string, quoted: string, checks: DoctorCheck[]): Promise<void> {
  const o = await readOutboxOverview(pool, { schema });
  const rows = o.backlog.exact ? `${o.backlog.rows}` : `about ${o.backlog.rows}`;
  checks.push({
    name: 'outbox',
    status: 'ok',
    message: `${quoted}.outbox: ${rows} rows waiting${o.backlog.rows > 0 ? `, the oldest ${Math.round(o.backlog.oldestAgeSeconds)} s old` : ''}; ${o.relays.length} relay${o.relays.length === 1 ? '' : 's'} visible`,
  });
}

/** Reads which migrations are applied, without taking the migration lock or writing anything. */
async function checkDatabase(databaseUrl: string, schema: string): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, connectionTimeoutMillis: 5000, application_name: 'mailroom-doctor' });
  pool.on('error', () => undefined);
  const quoted = quoteIdentifier(schema);
  try {
    const version = await pool.query<{ v: string }>("SELECT pg_catalog.current_setting('server_version') AS v");
    checks.push({ name: 'postgres', status: 'ok', message: `PostgreSQL ${version.rows[0]?.v ?? '?'} at ${redactUrl(databaseUrl)}` });
  } catch (error) {
    checks.push({ name: 'postgres', status: 'fail', message: `PostgreSQL at ${redactUrl(databaseUrl)}: ${describeError(error)}` });
    await pool.end().catch(() => undefined);
    return checks;
  }
  try {
    const known = renderMigrations(schema);
    const latest = known.at(-1);
    const present = await pool.query<{ p: boolean }>('SELECT pg_catalog.to_regclass($1) IS NOT NULL AS p', [`${quoted}.mailroom_migrations`]);
    const applied = new Set<number>();
    if (present.rows[0]?.p === true) {
      // mailroom_migrations is the owner's alone: a least-privilege role (the relay's, an
      // operator's) cannot read it, and is told so instead of failing the whole check.
      const readable = await pool.query<{ r: boolean; who: string }>(
        "SELECT pg_catalog.has_table_privilege($1, 'SELECT') AS r, current_user::pg_catalog.text AS who",
        [`${quoted}.mailroom_migrations`],
      );
      if (readable.rows[0]?.r !== true) {
        checks.push({
          name: 'migrations',
          status: 'note',
          message: `schema "${schema}" is migrated, but role "${readable.rows[0]?.who ?? '?'}" may not read ${quoted}.mailroom_migrations (the owner's table): pending migrations not checked`,
          fix: 'run `mailroom doctor` as the role that runs `mailroom migrate` to check them',
        });
        await checkOutbox(pool, schema, quoted, checks);
        return checks;
      }
      const rows = await pool.query<{ id: number }>(`SELECT id FROM ${quoted}.mailroom_migrations`);
      for (const r of rows.rows) applied.add(Number(r.id));
    }
    const pending = known.filter((m) => !applied.has(m.id));
    const newer = [...applied].filter((id) => !known.some((m) => m.id === id)).sort((a, b) => a - b);
    if (applied.size === 0) {
      checks.push({
        name: 'migrations',
        status: 'fail',
        message: `schema "${schema}" is not migrated: ${quoted}.outbox does not exist (${known.length} migrations pending)`,
        fix: 'run `mailroom migrate`',
      });
    } else if (pending.length > 0) {
      checks.push({
        name: 'migrations',
        status: 'fail',
        message: `schema "${schema}": ${pending.length} migration${pending.length > 1 ? 's' : ''} pending: ${pending.map((m) => `${m.id} ${m.name}`).join(', ')}`,
        fix: 'run `mailroom migrate`',
      });
    } else {
      checks.push({ name: 'migrations', status: 'ok', message: `schema "${schema}" is up to date (${known.length} migrations, the latest ${latest?.id} ${latest?.name})` });
    }
    if (newer.length > 0) {
      checks.push({
        name: 'migrations:newer',
        status: 'note',
        message: `schema "${schema}" has migration${newer.length > 1 ? 's' : ''} ${newer.join(', ')} that this mailroom does not know: a newer version migrated it`,
      });
    }
    if (applied.size > 0) await checkOutbox(pool, schema, quoted, checks);
  } catch (error) {
    checks.push({ name: 'migrations', status: 'fail', message: `cannot read the migrations of schema "${schema}": ${describeError(error)}` });
  } finally {
    await pool.end().catch(() => undefined);
  }
  return checks;
}

/** `mailroom doctor`: the database, its migrations, and (with a broker URL) RabbitMQ's permissions and plugins. */
export const doctorCommand: Command = {
  help: () =>
    [
      'Usage: mailroom doctor [--json] [--prefix NAME] [--plugin NAME]...',
      '',
      'Checks PostgreSQL and the migrations of the schema (pending ones fail), the outbox backlog, and, when',
      'MAILROOM_AMQP_URL is set, RabbitMQ: the connection, the permissions configure, write, read and bind on a',
      'temporary exchange and queue named <prefix>doctor-<random> (deleted after), and plugins. Without',
      'MAILROOM_AMQP_URL the broker checks are skipped (not failed). Exits 1 only when a check fails.',
      '',
      '  --json          one JSON object: {"ok": …, "checks": [{"name","status","message","fix"}]}',
      '  --prefix NAME   start of the temporary names: the names your permissions must allow (default: mailroom.)',
      `  --plugin NAME   a plugin your configuration needs (repeatable): ${Object.keys(PLUGIN_EXCHANGE_TYPES).join(', ')}`,
      '                  (rabbitmq_consistent_hash_exchange is always checked, and only noted when missing)',
      '',
      'Environment:',
      describeEnv(DOCTOR_ENV),
    ].join('\n'),
  async run({ argv, env, stdout }) {
    const args = parseArgs(argv);
    const {
      databaseUrl,
      schema,
      amqpUrl,
      amqpTlsCaFile,
      amqpTlsCertFile,
      amqpTlsKeyFile,
      amqpTlsKeyPassphrase,
      amqpTlsServername,
      amqpTlsRejectUnauthorized,
      amqpAuth,
    } = readEnv(env, DOCTOR_ENV);
    validateIdentifier(schema);
    const checks = await checkDatabase(databaseUrl, schema);
    if (amqpUrl === undefined) {
      checks.push({ name: 'rabbitmq', status: 'skip', message: 'RabbitMQ: not checked (MAILROOM_AMQP_URL is not set; set it to check the connection, permissions and plugins)' });
    } else {
      const tlsEnv = { amqpTlsCaFile, amqpTlsCertFile, amqpTlsKeyFile, amqpTlsKeyPassphrase, amqpTlsServername, amqpTlsRejectUnauthorized, amqpAuth };
      const connection = amqpConnectionOptions(splitAmqpUrls(amqpUrl), tlsEnv);
      checks.push(...(await checkBroker({ connection, prefix: args.prefix, requiredPlugins: args.plugins })));
    }
    const ok = checks.every((c) => c.status !== 'fail');
    if (args.json) stdout.write(`${JSON.stringify({ ok, checks })}\n`);
    else stdout.write(`${checks.map(formatCheck).join('\n')}\n`);
    return ok ? 0 : 1;
  },
};
