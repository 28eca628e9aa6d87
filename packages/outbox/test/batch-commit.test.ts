// How a batch commits: the delete of the published rows travels with the COMMIT, in a transaction
// that does not wait for a WAL flush (synchronous_commit off; a lost commit only republishes).
// A statement trigger on the outbox records the settings the relay's DELETE ran under.
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, type Relay } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount } from './relay-process.js';
import { commitEvents } from './commit-events.js';

let db: TestDatabase;
let broker: TestBroker;
let relay: Relay | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  await relay?.stop();
  await broker?.close();
  await db?.close();
});

it("the relay deletes published rows in a transaction that does not wait for the WAL flush, with search_path pinned", async () => {
  const s = `"${db.schema}"`;
  await db.pool.query(`CREATE TABLE ${s}.deletes (synchronous_commit text, search_path text, rows_left bigint)`);
  await db.pool.query(`CREATE FUNCTION ${s}.record_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO ${s}.deletes VALUES (pg_catalog.current_setting('synchronous_commit'), pg_catalog.current_setting('search_path'),
        (SELECT pg_catalog.count(*) FROM ${s}.outbox));
      RETURN NULL;
    END $$`);
  await db.pool.query(`CREATE TRIGGER record_delete AFTER DELETE ON ${s}.outbox FOR EACH STATEMENT EXECUTE FUNCTION ${s}.record_delete()`);

  const exchange = broker.name('batch-commit');
  const queue = await broker.queueFor(exchange, '#');
  const Event = defineMessage('batch.commit', z.object({ n: z.number() }), { exchange });
  const received = broker.collect(queue);
  const messages = [0, 1, 2].map((n) => Event.create({ n }));
  await commitEvents(db.pool, db.schema, messages);
  relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema, pollIntervalMs: 200 });
  await relay.start();
  await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 10_000, interval: 20 });
  await vi.waitFor(() => expect(received.ids().sort()).toEqual(messages.map((m) => m.messageId).sort()), { timeout: 10_000, interval: 20 });
  const { rows } = await db.pool.query<{ synchronous_commit: string; search_path: string; rows_left: string }>(`SELECT * FROM ${s}.deletes`);
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) {
    expect(row.synchronous_commit).toBe('off');
    expect(row.search_path).toBe('pg_catalog, pg_temp');
    expect(row.rows_left).toBe('0');
  }
  await received.stop();
});
