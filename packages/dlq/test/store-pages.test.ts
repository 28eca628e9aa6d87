// Issue 13 (the workbench's store API): keyset pages, filters with odd text, selections by
// filter, replays in batches, edit-and-replay, the audit in order, the overview and the timeline.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { DEAD_LETTER_REASON } from '@mailroom/core';
import { createDeadLetterStore, type DeadLetterStore, type NewDeadLetter } from '@mailroom/dlq';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let store: DeadLetterStore;
beforeAll(async () => {
  db = await createTestDatabase();
  store = createDeadLetterStore({ db: db.pool, schema: db.schema, actor: 'pages-test' });
});
afterAll(async () => {
  await db.close();
});
beforeEach(async () => {
  await db.pool.query(`TRUNCATE "${db.schema}".dead_letters, "${db.schema}".dead_letter_actions, "${db.schema}".outbox RESTART IDENTITY`);
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
    payload: { orderId: 'o-1' },
    ...fields,
  });
  return messageId;
}

it('walks every dead letter once, newest first, by keyset pages, even when many share a failure time', async () => {
  const same = new Date(Date.now() - 60_000);
  for (let i = 0; i < 17; i++) await record({ failedAt: same });
  for (let i = 0; i < 8; i++) await record({ failedAt: new Date(Date.now() - 1000 * i) });
  const seen: string[] = [];
  let after: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await store.page({ limit: 7, ...(after === undefined ? {} : { after }) });
    seen.push(...page.deadLetters.map((d) => d.id));
    pages++;
    if (page.next === null) break;
    after = page.next;
  }
  expect(pages).toBe(4);
  expect(seen).toHaveLength(25);
  expect(new Set(seen).size).toBe(25);
  const all = await store.list({ limit: 100 });
  expect(all.map((d) => d.id)).toEqual(seen);
  await expect(store.page({ after: "1' OR 1=1 --" })).rejects.toThrow(/not a dead-letter page cursor/);
});

it('filters by text literally (%, _ and quotes are plain characters), by time, reason and type; odd text never breaks the SQL', async () => {
  await record({ error: 'Error: 100% of quota used' });
  await record({ error: 'Error: 100 of quota used', payload: { note: 'under_score' } });
  await record({ error: 'Error: timeout', reason: DEAD_LETTER_REASON.maxAttempts, type: 'order.shipped', failedAt: new Date(Date.now() - 3 * 3_600_000) });
  expect(await store.count({ text: '100%' })).toBe(1);
  expect(await store.count({ text: 'UNDER_SCORE' })).toBe(1);
  expect(await store.count({ text: 'under%score' })).toBe(0);
  expect(await store.count({ text: 'QUOTA' })).toBe(2);
  expect(await store.count({ until: new Date(Date.now() - 3_600_000) })).toBe(1);
  expect(await store.count({ since: new Date(Date.now() - 3_600_000) })).toBe(2);
  expect(await store.count({ reason: DEAD_LETTER_REASON.maxAttempts, type: 'order.shipped' })).toBe(1);
  for (const odd of ["'; DROP TABLE dead_letters; --", '\u0000', '\\', '%_%', '\uD800', 'x'.repeat(5000)]) {
    expect(await store.count({ text: odd, source: odd, type: odd, reason: odd, group: odd })).toBe(0);
  }
  await expect(store.count({ since: new Date('nonsense') })).rejects.toThrow(/not a valid date/);
});

it('selects by filter for preview, replay and discard; an empty filter or a filter with ids is refused', async () => {
  for (let i = 0; i < 3; i++) await record({ source: 'shipping', error: 'Error: no address' });
  await record();
  await expect(store.discard({ filter: {} })).rejects.toThrow(/at least one condition/);
  await expect(store.discard({ filter: { source: 'shipping' }, ids: ['1'] })).rejects.toThrow(/not both/);
  expect((await store.preview({ filter: { source: 'shipping' } })).count).toBe(3);
  expect(await store.discard({ filter: { source: 'shipping', text: 'address' } })).toBe(3);
  expect(await store.count()).toBe(1);
  const [action] = await store.actions();
  expect(action).toMatchObject({ action: 'discard', count: 3, selection: { filter: { source: 'shipping', text: 'address' } } });
});

it('replays a large selection in batches: every row once, in row-id order, each batch audited', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 23; i++) ids.push(await record());
  let afterId: string | undefined;
  const batches: number[] = [];
  const replayed: string[] = [];
  for (;;) {
    const result = await store.replay({ filter: { source: 'billing' }, limit: 5, ...(afterId === undefined ? {} : { afterId }) });
    batches.push(result.examined);
    replayed.push(...result.messageIds);
    if (result.done) break;
    afterId = result.lastId ?? undefined;
  }
  expect(batches).toEqual([5, 5, 5, 5, 3]);
  expect(replayed).toEqual(ids);
  const outbox = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${db.schema}".outbox`);
  expect(outbox.rows[0]?.n).toBe(23);
  // Newest first, past ten actions (ids compared as numbers, not as text).
  const actions = await store.actions();
  expect(actions.map((a) => a.count)).toEqual([3, 5, 5, 5, 5]);
  await db.pool.query(`DELETE FROM "${db.schema}".outbox`);
  for (let i = 0; i < 8; i++) await store.replay({ ids: [ids[i] as string] });
  const after = await store.actions({ limit: 3 });
  expect(after.map((a) => Number(a.id))).toEqual([...after.map((a) => Number(a.id))].sort((a, b) => b - a));
  const newest = await db.pool.query<{ id: string }>(`SELECT max(id)::text AS id FROM "${db.schema}".dead_letter_actions`);
  expect(after[0]?.id).toBe(newest.rows[0]?.id);
});

it('edit-and-replay sends the edited JSON under the same message id, only for one dead letter, and says so in the audit', async () => {
  const id = await record({ payload: { orderId: 'o-1', total: -1 } });
  const other = await record();
  await expect(store.replay({ ids: [id, other], payload: { total: 1 } })).rejects.toThrow(/exactly one dead letter/);
  await expect(store.replay({ ids: [id], payload: { bad: 'nul\u0000' } })).rejects.toThrow(/NUL/);
  const result = await store.replay({ ids: [id], payload: { orderId: 'o-1', total: 5 } });
  expect(result).toMatchObject({ count: 1, messageIds: [id] });
  const row = await db.pool.query<{ payload: unknown }>(`SELECT payload FROM "${db.schema}".outbox WHERE message_id = $1`, [id]);
  expect(row.rows[0]?.payload).toEqual({ orderId: 'o-1', total: 5 });
  expect((await store.show(id))?.payload).toEqual({ orderId: 'o-1', total: -1 });
  expect((await store.actions())[0]?.selection).toEqual({ ids: [id], edited: true });
});

// The outbox's figures are the outbox's (readOutboxOverview): overview-layering.test.ts.
it('the overview counts dead letters, and the timeline buckets dead letters by group', async () => {
  await record({ failedAt: new Date(Date.now() - 20 * 60_000) });
  await record({ failedAt: new Date(Date.now() - 80 * 60_000) });
  await record({ source: 'shipping', failedAt: new Date(Date.now() - 20 * 60_000) });
  const overview = await store.overview();
  expect(overview.deadLetters).toEqual({ total: 3, pending: 3 });
  const timeline = await store.timeline({ since: new Date(Date.now() - 2 * 3_600_000), buckets: 4, groups: 1 });
  expect(timeline.series).toHaveLength(1);
  expect(timeline.series[0]).toMatchObject({ source: 'billing', counts: [0, 1, 0, 1] });
  expect(timeline.other).toEqual([0, 0, 0, 1]);
});
