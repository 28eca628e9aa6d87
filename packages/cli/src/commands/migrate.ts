import pg from 'pg';
import { DEFAULT_SCHEMA, migrate, migrationScript } from '@mailroom/core';
import { validateIdentifier } from '@mailroom/core/internal';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { DATABASE_ENV } from '../connection-env.js';
import { describeEnv, readEnv } from '../env.js';

/** `mailroom migrate [--dry-run] [--print-sql]`: brings mailroom's tables up to date. */
export const migrateCommand: Command = {
  help: () =>
    [
      'Usage: mailroom migrate [--dry-run] [--print-sql]',
      '',
      "Applies mailroom's pending migrations under an advisory lock (safe when several processes start at once).",
      '  --dry-run    print the SQL of the pending migrations, apply nothing',
      '  --print-sql  print every migration as one script for your own migration tool (no database needed)',
      '',
      'Environment:',
      describeEnv(DATABASE_ENV),
    ].join('\n'),
  async run({ argv, env, stdout }) {
    const unknown = argv.filter((a) => a !== '--dry-run' && a !== '--print-sql');
    if (unknown.length > 0) throw new UsageError(`unknown argument ${unknown.join(' ')} (see --help)`);
    if (argv.includes('--print-sql')) {
      // No database is needed, so only the schema is read (MAILROOM_DATABASE_URL may be unset).
      const schema = env.MAILROOM_SCHEMA !== undefined && env.MAILROOM_SCHEMA !== '' ? env.MAILROOM_SCHEMA : DEFAULT_SCHEMA;
      stdout.write(migrationScript(schema));
      return 0;
    }
    const vars = readEnv(env, DATABASE_ENV);
    validateIdentifier(vars.schema);
    const pool = new pg.Pool({ connectionString: vars.databaseUrl, max: 1, application_name: 'mailroom-migrate' });
    pool.on('error', () => undefined);
    try {
      const dryRun = argv.includes('--dry-run');
      const result = await migrate(pool, { schema: vars.schema, dryRun });
      if (dryRun) {
        if (result.applied.length === 0) stdout.write(`-- schema "${vars.schema}" is up to date\n`);
        for (const m of result.applied) stdout.write(`-- migration ${m.id}: ${m.name}\n${m.sql.trim()}\n\n`);
      } else if (result.applied.length === 0) {
        stdout.write(`schema "${vars.schema}" is up to date (${result.alreadyApplied.length} migrations)\n`);
      } else {
        for (const m of result.applied) stdout.write(`applied migration ${m.id}: ${m.name}\n`);
      }
      return 0;
    } finally {
      await pool.end().catch(() => undefined);
    }
  },
};
