import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetricsRegistry } from '@mailroom/core';
import { createDeadLetterSink, createDeadLetterStore, DEAD_LETTER_HEADERS, deriveMessageId, type DeadLetterStore } from '@mailroom/dlq';
import { createTestBroker, createTestDatabase, testUrls, waitFor, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let broker: TestBroker;
let store: DeadLetterStore;
beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
  store = createDeadLetterStore({ db: db.pool, schema: db.schema });
});
afterAll(async () => {
  const ch = await broker.connection.createChannel();
  await ch.deleteQueue(broker.name('dead')).catch(() => undefined);
  await ch.deleteExchange(broker.name('dead')).catch(() => undefined);
  await ch.close();
  await broker.close();
  await db.close();
});

describe('dead-letter sink', () => {
  it('stores each dead letter once, however often it is delivered, and keeps a non-JSON or jsonb-hostile body raw', async () => {
    const sink = createDeadLetterSink({ db: db.pool, schema: db.schema, amqp: testUrls().amqpUrl, topology: { exchange: broker.name('dead'), queue: broker.name('dead') } });
    await sink.start();
    const ch = await broker.connection.createConfirmChannel();
    const id = randomUUID();
    const headers = { [DEAD_LETTER_HEADERS.reason]: 'max-attempts', [DEAD_LETTER_HEADERS.source]: 'billing', [DEAD_LETTER_HEADERS.error]: 'Error: timeout after 5000 ms', 'x-mailroom-attempts': 5 };
    for (let i = 0; i < 3; i++) ch.publish(broker.name('dead'), 'billing', Buffer.from('{"a":1}'), { messageId: id, type: 'order.placed', headers });
    ch.publish(broker.name('dead'), 'billing', Buffer.from('{"s":"nul \\u0000 here"}'), { type: 'order.placed', headers: { ...headers, [DEAD_LETTER_HEADERS.reason]: 'missing-message-id' } });
    await ch.waitForConfirms();
    await waitFor(() => sink.stored === 4, { what: 'four deliveries stored' });
    const rows = await store.list({ source: 'billing' });
    expect(rows).toHaveLength(2);
    const once = rows.find((r) => r.messageId === id);
    expect(once).toMatchObject({ reason: 'max-attempts', attempts: 5, payload: { a: 1 }, body: null, type: 'order.placed' });
    const hostile = rows.find((r) => r.reason === 'missing-message-id');
    expect(hostile?.messageId).toBe(deriveMessageId({ source: 'billing', rawMessageId: null, body: Buffer.from('{"s":"nul \\u0000 here"}') }));
    expect(hostile?.payload).toBeNull();
    expect(hostile?.body?.toString()).toBe('{"s":"nul \\u0000 here"}');
    await sink.stop();
    await ch.close();
  });
});

describe('dead-letter store', () => {
  it('lists with filters, groups by fingerprint, discards by group', async () => {
    const old = new Date(Date.now() - 3 * 86_400_000);
    for (let i = 0; i < 3; i++) {
      await store.record({ messageId: randomUUID(), source: 'shipping', reason: 'non-retryable', error: `Error: no address for customer ${1000 + i}`, type: 'order.shipped', payload: { i } });
    }
    await store.record({ messageId: randomUUID(), source: 'shipping', reason: 'invalid-payload', error: 'bad', type: 'order.cancelled', payload: {}, failedAt: old });
    expect(await store.list({ source: 'shipping' })).toHaveLength(4);
    expect(await store.list({ source: 'shipping', type: 'order.cancelled' })).toHaveLength(1);
    expect(await store.list({ source: 'shipping', since: new Date(Date.now() - 86_400_000) })).toHaveLength(3);
    const groups = (await store.groups()).filter((g) => g.source === 'shipping');
    // The three "no address" errors differ only in a number: one group.
    expect(groups.map((g) => [g.count, g.reason])).toEqual([
      [3, 'non-retryable'],
      [1, 'invalid-payload'],
    ]);
    const fingerprint = groups[0]?.fingerprint as string;
    expect(await store.list({ group: fingerprint })).toHaveLength(3);
    expect(await store.discard({ group: fingerprint })).toBe(3);
    expect(await store.list({ source: 'shipping' })).toHaveLength(1);
    await expect(store.replay({ ids: ['not-an-id'] })).rejects.toThrow(/neither a dead-letter row id/);
    expect(await store.replay({ ids: ['999999'] })).toEqual({ count: 0, messageIds: [], skipped: [{ id: '999999', messageId: '', why: 'no such dead letter' }], dryRun: false });
    const registry = new MetricsRegistry();
    store.registerMetrics(registry);
    expect(await registry.render()).toMatch(/mailroom_dead_letters\{group="[0-9a-f]{16}",reason="invalid-payload",source="shipping"\} 1/);
  });
});
