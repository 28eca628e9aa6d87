import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEAD_LETTER_REASON, MetricsRegistry, type DeadLetterReason } from '@mailroom/core';
import { decodeDelivery, deriveMessageId, encodeDeadLetterCopy, loadEnvelopeSeal, toExecutor, type EnvelopeSeal } from '@mailroom/core/internal';
import { createDeadLetterSink, createDeadLetterStore, type DeadLetterStore } from '@mailroom/dlq';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let broker: TestBroker;
let store: DeadLetterStore;
let seal: EnvelopeSeal;
beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
  store = createDeadLetterStore({ db: db.pool, schema: db.schema });
  seal = await loadEnvelopeSeal(toExecutor(db.pool), db.schema);
});
afterAll(async () => {
  const ch = await broker.connection.createChannel();
  await ch.deleteQueue(broker.name('dead')).catch(() => undefined);
  await ch.deleteExchange(broker.name('dead')).catch(() => undefined);
  await ch.close();
  await broker.close();
  await db.close();
});

/** The copy the consumer of queue `billing` publishes when it gives up on a message (written and sealed by core's codec). */
function deadLetterCopy(body: Buffer, messageId: string | undefined, reason: DeadLetterReason, attempt: number): ReturnType<typeof encodeDeadLetterCopy> {
  const message = { content: body, fields: { exchange: 'events', routingKey: 'order.placed' }, properties: { messageId, type: 'order.placed', headers: {} } };
  const delivery = { ...decodeDelivery(message, 'billing'), attempt };
  return encodeDeadLetterCopy(message, delivery, { reason, error: 'Error: timeout after 5000 ms', source: 'billing' }, seal);
}

describe('dead-letter sink', () => {
  it('stores each dead letter once, however often it is delivered, and keeps a non-JSON or jsonb-hostile body raw', async () => {
    const sink = createDeadLetterSink({ db: db.pool, schema: db.schema, amqp: testUrls().amqpUrl, topology: { exchange: broker.name('dead'), queue: broker.name('dead') } });
    await sink.start();
    const ch = await broker.connection.createConfirmChannel();
    const id = randomUUID();
    const hostileBody = Buffer.from('{"s":"nul \\u0000 here"}');
    for (let i = 0; i < 3; i++) ch.publish(broker.name('dead'), 'billing', Buffer.from('{"a":1}'), deadLetterCopy(Buffer.from('{"a":1}'), id, DEAD_LETTER_REASON.maxAttempts, 5));
    ch.publish(broker.name('dead'), 'billing', hostileBody, deadLetterCopy(hostileBody, undefined, DEAD_LETTER_REASON.missingMessageId, 5));
    await ch.waitForConfirms();
    // Wait on the rows, and on every delivery having been stored (counted after its commit):
    // each redelivery is an upsert of the same row.
    await vi.waitFor(
      async () => {
        expect(sink.stats.stored).toBe(4);
        expect(await store.list({ source: 'billing' })).toHaveLength(2);
      },
      { timeout: 30_000, interval: 50 },
    );
    const rows = await store.list({ source: 'billing' });
    expect(rows).toHaveLength(2);
    const once = rows.find((r) => r.messageId === id);
    expect(once).toMatchObject({ reason: 'max-attempts', attempts: 5, payload: { a: 1 }, body: null, type: 'order.placed' });
    const hostile = rows.find((r) => r.reason === 'missing-message-id');
    expect(hostile?.messageId).toBe(deriveMessageId({ source: 'billing', rawMessageId: null, body: hostileBody }));
    expect(hostile?.payload).toBeNull();
    expect(hostile?.body?.toString()).toBe('{"s":"nul \\u0000 here"}');
    await sink.stop();
    expect(sink.stats).toMatchObject({ stored: 4, failures: 0 });
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
    expect(await store.replay({ ids: ['999999'] })).toEqual({ count: 0, messageIds: [], skipped: [{ id: '999999', messageId: '', why: 'no such dead letter' }], dryRun: false, examined: 0, lastId: null, done: true });
    const registry = new MetricsRegistry();
    store.registerMetrics(registry);
    expect(await registry.render()).toMatch(/mailroom_dead_letters\{group="[0-9a-f]{16}",reason="invalid-payload",source="shipping"\} 1/);
  });

  it('a new failure after a replay makes the dead letter pending again', async () => {
    const messageId = randomUUID();
    const failedAt = new Date(Date.now() - 60_000);
    const failure = { messageId, source: 'invoicing', reason: 'max-attempts', error: 'Error: ledger locked', type: 'order.placed', exchange: 'events', routingKey: 'order.placed', payload: { orderId: 'o-1' } } as const;
    const pendingIds = async (): Promise<string[]> => (await store.list({ source: 'invoicing', pendingOnly: true })).map((d) => d.messageId);
    const group = async (): Promise<unknown> => (await store.groups()).find((g) => g.source === 'invoicing');
    await store.record({ ...failure, failedAt });
    expect(await store.replay({ ids: [messageId] })).toMatchObject({ count: 1, messageIds: [messageId] });
    const replayedAt = (await store.show(messageId))?.replayedAt;
    expect(replayedAt).toBeInstanceOf(Date);
    expect(await pendingIds()).toEqual([]);
    expect(await group()).toMatchObject({ count: 1, pending: 0 });

    // A redelivered copy of the failure from before the replay changes nothing: still replayed.
    await store.record({ ...failure, failedAt });
    expect((await store.show(messageId))?.replayedAt).toEqual(replayedAt);
    expect(await pendingIds()).toEqual([]);

    // The replayed message fails again, after the replay: pending again, in the list and the groups.
    const later = new Date((replayedAt as Date).getTime() + 1000);
    await store.record({ ...failure, attempts: 3, failedAt: later });
    expect(await store.show(messageId)).toMatchObject({ replayedAt: null, attempts: 3, lastFailedAt: later, firstFailedAt: failedAt });
    expect(await pendingIds()).toEqual([messageId]);
    expect(await group()).toMatchObject({ count: 1, pending: 1 });
  });
});
