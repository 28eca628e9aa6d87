// The first hour's traps (issue 13): `enqueue` into a database nobody migrated, and `createRelay`
// handed the kysely instance that producers and consumers take, must each say what to do.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { z } from 'zod';
import { defineMessage, isMailroomError, migrate, type MailroomError, type OutgoingMessage } from '@mailroom/core';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createTestDatabase, randomName, testUrls, type TestDatabase } from '../../../test/helpers.js';

const Event = defineMessage('first-hour.event', z.object({ n: z.number() }));

let db: TestDatabase;
let kysely: Kysely<Record<string, never>>;

beforeAll(async () => {
  // Not migrated: the schema does not even exist, as in a database someone just created.
  db = await createTestDatabase({ migrate: false });
  kysely = new Kysely({ dialect: new PostgresDialect({ pool: db.pool }) });
});
afterAll(async () => {
  // kysely's destroy() would end the shared pool; close() ends it once.
  await db?.close();
});

/** Runs `enqueue` in a pg transaction that is rolled back; returns what it threw. */
async function enqueueWithPg(messages: OutgoingMessage | OutgoingMessage[], schema: string): Promise<unknown> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await enqueue(client, messages, { schema });
    return undefined;
  } catch (error) {
    return error;
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

function expectNotMigrated(error: unknown, schema: string, sqlState: string): MailroomError {
  expect(isMailroomError(error, 'NOT_MIGRATED'), String(error)).toBe(true);
  const e = error as MailroomError;
  expect(e.message).toContain('run `mailroom migrate`');
  expect(e.message).toContain(`"${schema}"`);
  expect(e.details).toEqual({ schema, sqlState });
  expect((e.cause as { code?: unknown }).code).toBe(sqlState);
  return e;
}

describe('enqueue into an unmigrated schema', () => {
  it('says "run `mailroom migrate`" for one event, a batch and a keyed event, through pg', async () => {
    const one = await enqueueWithPg(Event.create({ n: 1 }), db.schema);
    expect(expectNotMigrated(one, db.schema, '42P01').message).toContain(`is not migrated (relation "${db.schema}.outbox" does not exist)`);
    expectNotMigrated(await enqueueWithPg([Event.create({ n: 1 }), Event.create({ n: 2 })], db.schema), db.schema, '42P01');
    expectNotMigrated(await enqueueWithPg(Event.create({ n: 3 }, { key: 'k-1' }), db.schema), db.schema, '42P01');
  });

  it('says the same through a kysely transaction', async () => {
    const error = await kysely
      .transaction()
      .execute((trx) => enqueue(trx, Event.create({ n: 1 }), { schema: db.schema }))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expectNotMigrated(error, db.schema, '42P01');
  });

  it('says the outbox is older than this version when a column is missing', async () => {
    const schema = randomName('mr');
    await db.pool.query(`CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".outbox (id bigint)`);
    try {
      const error = expectNotMigrated(await enqueueWithPg(Event.create({ n: 1 }), schema), schema, '42703');
      expect(error.message).toContain('older than this version');
    } finally {
      await db.pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    }
  });

  it('leaves every other database error as it was, and works once migrated', async () => {
    const schema = randomName('mr');
    await migrate(db.pool, { schema });
    try {
      const message = Event.create({ n: 1 });
      expect(await enqueueWithPg(message, schema)).toBeUndefined();
      // The same message id twice in one transaction: a unique violation, not a migration problem.
      const duplicate = await enqueueWithPg([message, message], schema);
      expect(isMailroomError(duplicate)).toBe(false);
      expect((duplicate as { code?: unknown }).code).toBe('23505');
    } finally {
      await db.pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    }
  });
});

describe('the relay on an unmigrated schema', () => {
  it('fails start() with the same code and the command to run', async () => {
    const relay = createRelay({ database: db.pool, amqp: testUrls().amqpUrl, schema: db.schema });
    try {
      const error = await relay.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isMailroomError(error, 'NOT_MIGRATED'), String(error)).toBe(true);
      expect((error as Error).message).toContain('run `mailroom migrate`');
    } finally {
      await relay.stop();
    }
  });
});

describe('createRelay given a kysely instance', () => {
  it('says to pass the pg Pool kysely was made with, or a URL', async () => {
    const { amqpUrl } = testUrls();
    let thrown: unknown;
    try {
      // What a TypeScript user cannot write without a cast, and a JavaScript user easily does.
      createRelay({ database: kysely as unknown as pg.Pool, amqp: amqpUrl });
    } catch (error) {
      thrown = error;
    }
    expect(isMailroomError(thrown, 'INVALID_CONFIG'), String(thrown)).toBe(true);
    const message = (thrown as Error).message;
    expect(message).toContain('got a kysely instance');
    expect(message).toContain('pass the Pool your kysely PostgresDialect was made with');
    expect(message).toContain('or a PostgreSQL URL');
    // A kysely Transaction is refused the same way.
    const inTransaction = await kysely.transaction().execute(async (trx) => {
      try {
        createRelay({ database: trx as unknown as pg.Pool, amqp: amqpUrl });
        return undefined;
      } catch (error) {
        return error;
      }
    });
    expect((inTransaction as Error).message).toContain('got a kysely instance');
  });
});
