// The store's overview is the dead letters' and the consumers': it does not read the outbox
// (that is `readOutboxOverview` of @mailroom/outbox, which the workbench calls beside it). Proved
// against the real PostgreSQL: with the outbox locked by another transaction, overview() answers.
import { afterAll, beforeAll, expect, it } from 'vitest';
import pg from 'pg';
import { createDeadLetterStore } from '@mailroom/dlq';
import { createTestDatabase, testUrls, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let storePool: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase();
  // A store whose statements give up on a lock after 2 s instead of waiting forever.
  storePool = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 2, options: '-c lock_timeout=2000' });
});

afterAll(async () => {
  await storePool?.end();
  await db?.close();
});

it('overview() answers while another transaction holds the outbox locked, and has no outbox figures', async () => {
  const store = createDeadLetterStore({ db: storePool, schema: db.schema });
  await store.record({ messageId: crypto.randomUUID(), source: 'billing', reason: 'max-attempts', error: 'x', type: 't', payload: {} });
  const locker = await db.pool.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE "${db.schema}".outbox IN ACCESS EXCLUSIVE MODE`);
    const overview = await store.overview();
    expect(overview.deadLetters).toEqual({ total: 1, pending: 1 });
    expect(overview.consumers).toEqual([]);
    expect(Object.keys(overview).sort()).toEqual(['consumers', 'deadLetters']);
  } finally {
    await locker.query('ROLLBACK');
    locker.release();
  }
});
