import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { z } from 'zod';
import { Kysely, PostgresDialect } from 'kysely';
import { MailroomError, defineMessage, migrate, migrationScript, redactSecrets, createAmqpConnection } from '@mailroom/core';
import { parseConfig, validateIdentifier, inTransaction, toExecutor, renderMigrations } from '@mailroom/core/internal';
import { randomName, testUrls } from '../../../test/helpers.js';

describe('identifiers and secrets', () => {
  it('refuses a schema name that could carry SQL, with a clear error', () => {
    expect(() => validateIdentifier('x"; drop table t;--')).toThrowError(MailroomError);
    expect(() => validateIdentifier('x"; drop table t;--')).toThrowError(/Invalid schema name .*lower-case letters/);
    expect(() => migrationScript('x"; drop table t;--')).toThrowError(/Invalid schema name/);
    expect(validateIdentifier('mailroom_2')).toBe('mailroom_2');
  });

  it('redacts URL passwords and libpq passwords', () => {
    expect(redactSecrets('postgres://app:s3cret@db:5432/x failed')).toBe('postgres://app:***@db:5432/x failed');
    expect(redactSecrets('amqp://guest:hunter2@mq')).toBe('amqp://guest:***@mq');
    // An unencoded @ in the password (pg and amqplib accept it) must not leave its tail behind.
    expect(redactSecrets('connection to amqp://guest:p@ss@w0rd@mq:5672/v lost; postgres://a:b@c/d')).toBe(
      'connection to amqp://guest:***@mq:5672/v lost; postgres://a:***@c/d',
    );
    expect(redactSecrets("host=db password='p w' user=x")).toBe('host=db password=*** user=x');
    const error = new MailroomError('UNREACHABLE', 'cannot reach amqp://u:topsecret@h', { cause: new Error('at postgres://a:b@c') });
    expect(error.message).not.toContain('topsecret');
    expect(String((error.cause as Error).message)).not.toContain(':b@');
  });

  it('never shows the password of an unreachable AMQP URL', async () => {
    const connection = createAmqpConnection({ url: 'amqp://guest:n0tthepassw0rd@127.0.0.1:1' });
    const error = await connection.connectOnce().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MailroomError);
    expect((error as Error).message).toContain('amqp://guest:***@127.0.0.1:1');
    expect(JSON.stringify(error) + String((error as Error).stack) + String(((error as Error).cause as Error | undefined)?.message)).not.toContain(
      'n0tthepassw0rd',
    );
    await connection.close();
  });
});

describe('config', () => {
  it('rejects unknown keys by name', () => {
    const schema = z.strictObject({ batchSize: z.number().int().positive().default(100) });
    expect(parseConfig(schema, {}, 'relay options')).toEqual({ batchSize: 100 });
    expect(() => parseConfig(schema, { batchSize: 1, batchsize: 2, colour: 'red' }, 'relay options')).toThrowError(
      /unknown options "batchsize", "colour"/,
    );
    expect(() => parseConfig(schema, { batchSize: -1 }, 'relay options')).toThrowError(/"batchSize"/);
  });
});

describe('message contracts', () => {
  const OrderPlaced = defineMessage('order.placed', z.object({ orderId: z.string(), total: z.number().nonnegative() }));

  it('creates typed envelopes with a fresh UUID and validates the payload', () => {
    const message = OrderPlaced.create({ orderId: 'o-1', total: 3 }, { key: 'o-1' });
    expect(message.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(message).toMatchObject({ type: 'order.placed', key: 'o-1', exchange: 'mailroom', routingKey: 'order.placed' });
    expect(() => OrderPlaced.create({ orderId: 'o-1', total: -1 })).toThrowError(/Invalid payload for message type "order.placed": total/);
    expect(() => OrderPlaced.create({ orderId: 'o', total: 1 }, { messageId: 'nope' })).toThrowError(/must be a UUID/);
    expect(() => OrderPlaced.create({ orderId: 'o', total: 1 }, { headers: { 'x-mailroom-key': 'k' } })).toThrowError(/reserved/);
    // What the broker or amqplib would refuse is refused at create, not retried by the relay.
    expect(() => OrderPlaced.create({ orderId: 'o', total: 1 }, { routingKey: 'r'.repeat(256) })).toThrowError(/can never be published/);
    expect(() => OrderPlaced.create({ orderId: 'o', total: 1 }, { headers: { pad: 'p'.repeat(65_500) } })).toThrowError(/can never be published/);
  });
});

describe('migrations', () => {
  const { databaseUrl } = testUrls();
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 12 });
  const schemas: string[] = [];
  afterAll(async () => {
    for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    await pool.end();
  });

  it('applies once when eight processes start at once', async () => {
    const schema = randomName('mr');
    schemas.push(schema);
    const results = await Promise.all(Array.from({ length: 8 }, () => migrate(pool, { schema })));
    const appliedCounts = results.map((r) => r.applied.length);
    expect(appliedCounts.filter((n) => n > 0)).toHaveLength(1);
    const tables = await pool.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, [schema]);
    expect(tables.rows.map((r: { table_name: string }) => r.table_name)).toEqual(['dead_letter_actions', 'dead_letters', 'inbox', 'inbox_consumers', 'mailroom_migrations', 'outbox', 'outbox_archive', 'outbox_archive_default', 'outbox_scheduled', 'parked_keys', 'parked_messages', 'saga_history', 'sagas', 'secrets']);
    const again = await migrate(pool, { schema });
    expect(again.applied).toHaveLength(0);
  });

  it('dry run lists pending SQL without applying it', async () => {
    const schema = randomName('mr');
    const result = await migrate(pool, { schema, dryRun: true });
    expect(result.applied.map((m) => m.id)).toEqual(renderMigrations(schema).map((m) => m.id));
    expect(result.applied[0]?.sql).toContain(`CREATE TABLE "${schema}".outbox`);
    const present = await pool.query(`SELECT 1 FROM information_schema.schemata WHERE schema_name = $1`, [schema]);
    expect(present.rowCount).toBe(0);
  });

  it('runs through kysely as well as pg', async () => {
    const schema = randomName('mr');
    schemas.push(schema);
    const db = new Kysely<Record<string, never>>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: databaseUrl, max: 2 }) }) });
    try {
      const result = await migrate(db, { schema });
      expect(result.applied).toHaveLength(renderMigrations(schema).length);
      const count = await inTransaction(db, async (tx) => (await tx.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".outbox`)).rows[0]?.n);
      expect(count).toBe('0');
      const rows = await toExecutor(db).query<{ one: number }>('SELECT $1::int AS one', [1]);
      expect(rows.rows).toEqual([{ one: 1 }]);
    } finally {
      await db.destroy();
    }
  });
});
