import { MailroomError } from '@mailroom/core';
import type { Executor } from '@mailroom/core/internal';

// SQLSTATEs that, from mailroom's own statements, can only mean its tables are not there
// (undefined_table, invalid_schema_name) or are older than this code (undefined_column).
const ABSENT = new Set(['42P01', '3F000']);
const OUTDATED = '42703';

/**
 * Wraps the executor `enqueue` writes through, so that the first `enqueue` into a database nobody
 * migrated says what to do (`mailroom migrate`) instead of PostgreSQL's bare `relation
 * "mailroom.outbox" does not exist`. The check costs nothing on the happy path: it looks only at
 * errors PostgreSQL already raised. The original error is kept as the `cause`.
 */
export function reportUnmigratedSchema(db: Executor, schema: string): Executor {
  return {
    async query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]) {
      try {
        return await db.query<R>(text, params);
      } catch (error) {
        throw unmigratedSchemaError(error, schema) ?? error;
      }
    },
  };
}

/** A `NOT_MIGRATED` MailroomError for an error that says mailroom's tables are missing or outdated, else undefined. */
export function unmigratedSchemaError(error: unknown, schema: string): MailroomError | undefined {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  if (typeof code !== 'string') return undefined;
  const todo = 'run `mailroom migrate` (or `migrate(pool)` from @mailroom/core) against this database first';
  // PostgreSQL's own words name the table or column (the outbox, or outbox_scheduled for a
  // scheduled message), which tells an upgrade that skipped a migration from a fresh database.
  const said = error instanceof Error ? ` (${error.message})` : '';
  if (ABSENT.has(code)) {
    return new MailroomError('NOT_MIGRATED', `enqueue: schema "${schema}" is not migrated${said}: ${todo}.`, {
      cause: error,
      details: { schema, sqlState: code },
    });
  }
  if (code === OUTDATED) {
    return new MailroomError('NOT_MIGRATED', `enqueue: schema "${schema}" is older than this version of mailroom${said}: ${todo}.`, {
      cause: error,
      details: { schema, sqlState: code },
    });
  }
  return undefined;
}
