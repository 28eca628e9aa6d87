import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { DEFAULT_SCHEMA } from '@mailroom/core';
import { GRANT_FEATURES, MAILROOM_COMPONENTS, grantsScript, missingGrants, validateIdentifier, type GrantFeatures, type MailroomComponent } from '@mailroom/core/internal';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { DATABASE_ENV } from '../connection-env.js';
import { describeEnv, readEnv } from '../env.js';

const isComponent = (name: string): name is MailroomComponent => (MAILROOM_COMPONENTS as readonly string[]).includes(name);

/**
 * `mailroom grants --relay ROLE … [--ordering] [--saga] [--archive]`: prints the GRANT statements
 * each component's role needs (no database needed); `mailroom grants --check COMPONENT`: says what
 * the connecting role lacks. Without a feature flag only the grants every deployment uses are given.
 */
export const grantsCommand: Command = {
  help: () =>
    [
      'Usage: mailroom grants [--producer ROLE] [--relay ROLE] [--consumer ROLE] [--sink ROLE] [--operator ROLE]',
      '                       [--ordering] [--saga] [--archive]',
      '       mailroom grants --check producer|relay|consumer|sink|operator [--ordering] [--saga] [--archive]',
      '',
      "Prints the GRANT statements that give each role exactly what its component needs on mailroom's",
      'tables in MAILROOM_SCHEMA (no database needed). One role may serve several components. Run them as',
      'the owner of the tables (the role that ran `mailroom migrate`), again after a migrate that adds a table:',
      '  mailroom grants --relay mailroom_relay --sink mailroom_relay --operator ops | psql "$OWNER_URL"',
      'Without a feature flag a role gets what its component always uses; each flag adds what a feature needs:',
      '  --ordering          a consumer with ordering or partitions: parked_keys, parked_messages',
      '  --saga              a consumer that runs saga steps or cleanupSagas: sagas, saga_history;',
      '                      an operator that runs `mailroom saga cleanup`: UPDATE, DELETE on them',
      '  --archive           a relay with MAILROOM_ARCHIVE=true (archive: true): INSERT on outbox_archive',
      '  --check COMPONENT   connect with MAILROOM_DATABASE_URL and list the privileges its role lacks for',
      '                      COMPONENT (exit 1 when any is missing)',
      '',
      'Environment:',
      describeEnv(DATABASE_ENV),
      '  (MAILROOM_DATABASE_URL is read by --check only)',
    ].join('\n'),
  async run({ argv, env, stdout }) {
    const { values, positionals } = (() => {
      try {
        return parseArgs({
          args: argv,
          allowPositionals: true,
          strict: true,
          options: {
            ...Object.fromEntries([...MAILROOM_COMPONENTS, 'check'].map((name) => [name, { type: 'string' as const }])),
            ...Object.fromEntries(GRANT_FEATURES.map((name) => [name, { type: 'boolean' as const }])),
          },
        });
      } catch (error) {
        throw new UsageError(`${(error as Error).message} (see mailroom grants --help)`);
      }
    })();
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals.join(' ')} (see --help)`);
    const { check, ...rest } = values as Record<string, string | boolean | undefined>;
    const features: GrantFeatures = {};
    const roles: Record<string, string> = {};
    for (const [name, value] of Object.entries(rest)) {
      if (typeof value === 'boolean') features[name as keyof GrantFeatures] = value;
      else if (typeof value === 'string') roles[name] = value;
    }
    if (check !== undefined) {
      if (Object.keys(roles).length > 0) throw new UsageError('--check takes no roles: it checks the role of MAILROOM_DATABASE_URL');
      if (typeof check !== 'string' || !isComponent(check)) throw new UsageError(`--check takes one of ${MAILROOM_COMPONENTS.join(', ')} (got ${JSON.stringify(check)})`);
      return runCheck(check, features, readEnv(env, DATABASE_ENV), stdout);
    }
    if (Object.keys(roles).length === 0) throw new UsageError(`give a role for at least one component: ${MAILROOM_COMPONENTS.map((c) => `--${c} ROLE`).join(', ')}`);
    // No database is needed, so only the schema is read (MAILROOM_DATABASE_URL may be unset).
    const schema = env.MAILROOM_SCHEMA !== undefined && env.MAILROOM_SCHEMA !== '' ? env.MAILROOM_SCHEMA : DEFAULT_SCHEMA;
    stdout.write(grantsScript(schema, roles, features));
    return 0;
  },
};

async function runCheck(component: MailroomComponent, features: GrantFeatures, vars: { databaseUrl: string; schema: string }, stdout: Writable): Promise<number> {
  const flags = GRANT_FEATURES.filter((f) => features[f] === true).map((f) => ` --${f}`).join('');
  const used = flags === '' ? '' : ` with${flags.replaceAll(' --', ' ')}`;
  validateIdentifier(vars.schema);
  const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 1, application_name: 'mailroom-grants' });
  pool.on('error', () => undefined);
  try {
    const role = (await pool.query<{ role: string }>('SELECT current_user AS role')).rows[0]?.role ?? '?';
    const missing = await missingGrants(pool, vars.schema, component, features);
    if (missing.length === 0) {
      stdout.write(`ok    role "${role}" has every grant the ${component}${used} needs in schema "${vars.schema}"\n`);
      return 0;
    }
    for (const m of missing) {
      stdout.write(m.privilege === 'missing' ? `FAIL  ${m.object} does not exist: run \`mailroom migrate\`\n` : `FAIL  role "${role}" lacks ${m.privilege} on ${m.object}\n`);
    }
    if (missing.some((m) => m.privilege !== 'missing')) stdout.write(`      grant them as the owner of the tables: mailroom grants --${component} ${role}${flags} | psql …\n`);
    return 1;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
