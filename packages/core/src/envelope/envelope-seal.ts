import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { MailroomError } from '../errors.js';
import type { Executor } from '../executor.js';
import { quoteIdentifier } from '../identifiers.js';

/**
 * Seals the fields mailroom writes into message copies with an HMAC, so that nobody who can only
 * publish to RabbitMQ can forge them: a retry copy's attempt count and origin (else a sender
 * skips every retry with `attempts: 99`, or picks where a replay publishes), and a dead-letter
 * copy's source, reason and destination (else anything published to the dead-letter exchange is
 * stored as genuine and replayed with the relay's credentials).
 */
export interface EnvelopeSeal {
  /** The seal of `fields` and the message body. */
  seal(fields: readonly (string | number)[], body: Buffer): string;
  /** True when `mac` is the seal of `fields` and `body`. */
  verify(fields: readonly (string | number)[], body: Buffer, mac: string | null): boolean;
}

/** A seal with `key` (at least 32 random bytes). */
export function createEnvelopeSeal(key: Buffer): EnvelopeSeal {
  const mac = (fields: readonly (string | number)[], body: Buffer): Buffer => {
    const h = createHmac('sha256', key);
    for (const f of fields) h.update(String(f)).update('\u0000');
    h.update(createHash('sha256').update(body).digest());
    return h.digest();
  };
  return {
    seal: (fields, body) => mac(fields, body).toString('base64url'),
    verify(fields, body, given) {
      if (given === null || given.length > 64) return false;
      const expected = mac(fields, body);
      const actual = Buffer.from(given, 'base64url');
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    },
  };
}

const KEY_NAME = 'envelope-seal';

/**
 * The seal of `schema`, with the key migration 5 wrote (components need SELECT on `secrets`).
 */
export async function loadEnvelopeSeal(db: Executor, schema: string): Promise<EnvelopeSeal> {
  const table = `${quoteIdentifier(schema)}.secrets`;
  const result = await db.query<{ value: Buffer }>(`SELECT value FROM ${table} WHERE name OPERATOR(pg_catalog.=) $1::pg_catalog.text`, [KEY_NAME]);
  const key = result.rows[0]?.value;
  if (key === undefined) {
    throw new MailroomError('NOT_MIGRATED', `${table} has no ${KEY_NAME} key: run \`mailroom migrate\` (or migrate()) first.`);
  }
  return createEnvelopeSeal(Buffer.from(key));
}
