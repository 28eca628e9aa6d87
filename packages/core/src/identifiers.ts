import { MailroomError } from './errors.js';

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Validates a PostgreSQL identifier chosen by configuration (a schema name) and returns it.
 * Only lower-case letters, digits and underscores are accepted, at most 63 characters, so the
 * name means the same quoted or not and can never carry SQL.
 */
export function validateIdentifier(name: string, what = 'schema name'): string {
  if (typeof name !== 'string' || !IDENTIFIER.test(name)) {
    throw new MailroomError(
      'INVALID_IDENTIFIER',
      `Invalid ${what} ${JSON.stringify(name)}: use 1 to 63 lower-case letters, digits or underscores, starting with a letter or underscore.`,
      { details: { name } },
    );
  }
  return name;
}

/** Validates an identifier and returns it double-quoted for SQL text. */
export function quoteIdentifier(name: string, what?: string): string {
  return `"${validateIdentifier(name, what)}"`;
}
