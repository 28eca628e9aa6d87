import { MailroomError } from './errors.js';
import { inTransaction, type Queryable } from './executor.js';
import { quoteIdentifier } from './identifiers.js';
import { MIGRATION_SOURCES } from './migrations.generated.js';

/** A numbered migration as shipped: SQL with `{{schema}}` where the schema name goes. */
export interface MigrationSource {
  /** Its number; migrations apply in this order, each once. */
  id: number;
  /** A short name, from the file name. */
  name: string;
  /** The SQL text with the `{{schema}}` placeholder. */
  sql: string;
}

/** A migration rendered for one schema, ready to run. */
export interface RenderedMigration {
  id: number;
  name: string;
  sql: string;
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** The schema that holds mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** Print the SQL instead of applying it. Default: false. */
  dryRun?: boolean;
}

/** What {@link migrate} did. */
export interface MigrateResult {
  /** The migrations applied now (or that would be, with `dryRun`). */
  applied: RenderedMigration[];
  /** The migrations that were already in place. */
  alreadyApplied: number[];
}

/** The default schema of mailroom's tables. */
export const DEFAULT_SCHEMA = 'mailroom';

/**
 * Every migration rendered for `schema`, for teams that run their own migration tool.
 * Apply them in order; the first statement of the set creates the schema.
 */
export function renderMigrations(schema: string = DEFAULT_SCHEMA): RenderedMigration[] {
  const quoted = quoteIdentifier(schema);
  return MIGRATION_SOURCES.map((m) => ({ id: m.id, name: m.name, sql: m.sql.replaceAll('{{schema}}', quoted) }));
}

/**
 * Brings mailroom's tables in `schema` up to date. Safe when several processes start at once:
 * the whole run holds a transaction-scoped advisory lock on the schema and applies all pending
 * migrations in one transaction, so a crash leaves either all or none of them.
 */
export async function migrate(db: Queryable, options: MigrateOptions = {}): Promise<MigrateResult> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const rendered = renderMigrations(schema);
  const quoted = quoteIdentifier(schema);
  try {
    return await inTransaction(db, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', ['mailroom.migrate', schema]);
      const exists = await tx.query<{ present: boolean }>(
        `SELECT to_regclass($1) IS NOT NULL AS present`,
        [`${quoted}.mailroom_migrations`],
      );
      const done = new Set<number>();
      if (exists.rows[0]?.present === true) {
        const rows = await tx.query<{ id: number }>(`SELECT id FROM ${quoted}.mailroom_migrations`);
        for (const row of rows.rows) done.add(Number(row.id));
      }
      const pending = rendered.filter((m) => !done.has(m.id));
      if (options.dryRun === true || pending.length === 0) {
        return { applied: pending, alreadyApplied: [...done].sort((a, b) => a - b) };
      }
      // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists: an
      // owner of a schema a DBA made for it could not migrate. Create it only when it is missing.
      const found = await tx.query<{ present: boolean }>(
        'SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1::pg_catalog.name) AS present',
        [schema],
      );
      if (found.rows[0]?.present !== true) await tx.query(`CREATE SCHEMA ${quoted}`);
      await tx.query(
        `CREATE TABLE IF NOT EXISTS ${quoted}.mailroom_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      for (const migration of pending) {
        await tx.query(migration.sql);
        await tx.query(`INSERT INTO ${quoted}.mailroom_migrations (id, name) VALUES ($1, $2)`, [migration.id, migration.name]);
      }
      return { applied: pending, alreadyApplied: [...done].sort((a, b) => a - b) };
    });
  } catch (error) {
    throw new MailroomError('MIGRATION_FAILED', `Migrating schema "${schema}" failed: ${(error as Error).message}`, { cause: error });
  }
}

/** The SQL a team runs by hand for `schema`: schema, bookkeeping table and every migration. */
export function migrationScript(schema: string = DEFAULT_SCHEMA): string {
  const quoted = quoteIdentifier(schema);
  const parts = [
    `CREATE SCHEMA IF NOT EXISTS ${quoted};`,
    `CREATE TABLE IF NOT EXISTS ${quoted}.mailroom_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());`,
  ];
  for (const m of renderMigrations(schema)) {
    parts.push(`-- migration ${m.id}: ${m.name}\n${m.sql.trim()}\nINSERT INTO ${quoted}.mailroom_migrations (id, name) VALUES (${m.id}, '${m.name}');`);
  }
  return parts.join('\n\n') + '\n';
}
