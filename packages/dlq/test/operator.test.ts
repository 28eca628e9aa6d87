// Issue 9, defect 12 (store API): a discard can be previewed and dry-run; a replay with no
// registered consumer is checked against the default inbox retention (7 days); every replay and
// discard is recorded with who did it, in the same transaction.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEAD_LETTER_REASON, isMailroomError } from '@mailroom/core';
import { createDeadLetterStore, type DeadLetterStore, type NewDeadLetter } from '@mailroom/dlq';
import { DEFAULT_RETENTION_MS } from '@mailroom/inbox';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let store: DeadLetterStore;
beforeAll(async () => {
  db = await createTestDatabase();
  store = createDeadLetterStore({ db: db.pool, schema: db.schema, actor: 'billing-service' });
});
afterAll(async () => {
  await db.close();
});

async function record(fields: Partial<NewDeadLetter> = {}): Promise<string> {
  const messageId = randomUUID();
  await store.record({
    messageId,
    source: 'billing',
    reason: DEAD_LETTER_REASON.nonRetryable,
    error: 'Error: no customer',
    type: 'order.placed',
    exchange: 'orders',
    routingKey: 'order.placed',
    payload: { orderId: 'o-1', total: 1 },
    ...fields,
  });
  return messageId;
}

it('discard with dryRun counts and deletes nothing; preview shows what a selection matches', async () => {
  const ids = [await record(), await record()];
  expect(await store.discard({ ids, dryRun: true })).toBe(2);
  expect(await store.show(ids[0] as string)).toBeDefined();
  const preview = await store.preview({ ids }, { limit: 1 });
  expect(preview.count).toBe(2);
  expect(preview.deadLetters).toHaveLength(1);
  expect(await store.actions()).toEqual([]);
  expect(await store.discard({ ids })).toBe(2);
  expect(await store.show(ids[0] as string)).toBeUndefined();
});

it('refuses a 400-day-old replay when no consumer is registered, against the default inbox retention, and says so', async () => {
  expect(DEFAULT_RETENTION_MS).toBe(7 * 86_400_000);
  const id = await record({ failedAt: new Date(Date.now() - 400 * 86_400_000) });
  const refusal = await store.replay({ ids: [id] }).catch((error: unknown) => error);
  expect(isMailroomError(refusal, 'REPLAY_REFUSED')).toBe(true);
  expect((refusal as Error).message).toContain('no consumer is registered in inbox_consumers: the default inbox retention (7.0 days) applies');
  expect(await store.replay({ ids: [id], dryRun: true }).catch((error: unknown) => error)).toMatchObject({ code: 'REPLAY_REFUSED' });
  // A recent one replays without force.
  const recent = await record();
  expect(await store.replay({ ids: [recent] })).toMatchObject({ count: 1, messageIds: [recent] });
  expect(await store.replay({ ids: [id], force: true, actor: 'ops: alice' })).toMatchObject({ count: 1 });
});

it('records every replay and discard with who, what and how many; dry runs and no-ops are not recorded', async () => {
  const actions = await store.actions();
  // Newest first: the forced replay (by alice), the replay (the store's actor), the discard.
  expect(actions.map((a) => [a.action, a.actor, a.count, a.selection])).toEqual([
    ['replay', 'ops: alice', 1, { ids: [expect.any(String) as unknown], force: true }],
    ['replay', 'billing-service', 1, { ids: [expect.any(String) as unknown] }],
    ['discard', 'billing-service', 2, { ids: [expect.any(String) as unknown, expect.any(String) as unknown] }],
  ]);
  expect(actions[0]?.dbUser).toBe('postgres');
  expect(await store.discard({ ids: ['999999'] })).toBe(0);
  expect(await store.actions()).toHaveLength(3);
});

it('checks a replay against the shortest registered retention by number, not by its text (7 days is not shorter than 1)', async () => {
  const day = 86_400_000;
  await db.pool.query(
    `INSERT INTO "${db.schema}".inbox_consumers (consumer, queue, retention_ms, retry_horizon_ms) VALUES ('weekly', 'q.weekly', $1, 0), ('daily', 'q.daily', $2, 0)`,
    [7 * day, day],
  );
  try {
    const id = await record({ failedAt: new Date(Date.now() - 2 * day) });
    const refusal = await store.replay({ ids: [id] }).catch((error: unknown) => error);
    expect(isMailroomError(refusal, 'REPLAY_REFUSED')).toBe(true);
    expect((refusal as Error).message).toContain('consumer "daily" (1.0 days');
  } finally {
    await db.pool.query(`DELETE FROM "${db.schema}".inbox_consumers WHERE consumer IN ('weekly', 'daily')`);
  }
});
