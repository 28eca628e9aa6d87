import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_REASON, MetricsRegistry } from '@mailroom/core';
import {
  decodeDeadLetter,
  decodeDelivery,
  deliveryKey,
  encodeDeadLetterCopy,
  encodeOutboxHeaders,
  occurredAtTimestamp,
  encodeRetryCopy,
  loadEnvelopeSeal,
  createEnvelopeSeal,
  replayHeaders,
  toExecutor,
  writeDeadLetters,
  type DeadLetterRecord,
  type WireMessage,
} from '@mailroom/core/internal';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';

const ID = '0b6f2a52-5a57-4a3e-9d5f-1a2b3c4d5e6f';

function delivery(headers: Record<string, unknown>, fields: Partial<WireMessage['fields']> = {}, messageId: unknown = ID): WireMessage {
  return {
    content: Buffer.from('{"n":1}'),
    fields: { exchange: 'orders', routingKey: 'order.placed', redelivered: false, ...fields },
    properties: { messageId, type: 'order.placed', headers },
  };
}

describe('envelope codec', () => {
  it('reads back what the relay writes: the key and the producer headers in headers, occurred-at from the timestamp property', () => {
    const occurredAtMs = Date.parse('2026-11-30T10:00:00.250Z');
    const headers = encodeOutboxHeaders({ traceparent: 't' }, { key: 'o-1' });
    expect(Object.keys(headers).sort()).toEqual(['traceparent', 'x-mailroom-key']);
    const message = delivery(headers);
    message.properties.timestamp = occurredAtTimestamp(occurredAtMs);
    const decoded = decodeDelivery(message, 'billing');
    expect(decoded).toMatchObject({ messageId: ID, type: 'order.placed', key: 'o-1', attempt: 1, fromRetry: false });
    // Whole seconds: the property's unit.
    expect(decoded.occurredAt.toISOString()).toBe('2026-11-30T10:00:00.000Z');
    expect(decoded.origin).toEqual({ exchange: 'orders', routingKey: 'order.placed' });
    expect(decoded.headers.traceparent).toBe('t');
    expect(deliveryKey(message)).toBe('o-1');
    // An unkeyed event without producer headers needs no header at all.
    expect(encodeOutboxHeaders({}, { key: null })).toEqual({});
  });

  it('reads occurred-at from the old header first (messages published before the property, in a queue at upgrade)', () => {
    // As relays before wrote it: the header to the millisecond, and the timestamp in seconds.
    const old = delivery({ 'x-mailroom-occurred-at': Buffer.from('2026-11-30T10:00:00.250Z'), 'x-mailroom-key': 'o-1' });
    old.properties.timestamp = occurredAtTimestamp(Date.parse('2026-11-30T10:00:00.250Z'));
    expect(decodeDelivery(old, 'billing').occurredAt.toISOString()).toBe('2026-11-30T10:00:00.250Z');
    // A header that does not parse falls back to the property; neither: the time of reading.
    const broken = delivery({ 'x-mailroom-occurred-at': 'not a date' });
    broken.properties.timestamp = 1_800_000_000;
    expect(decodeDelivery(broken, 'billing').occurredAt.getTime()).toBe(1_800_000_000_000);
    const before = Date.now();
    expect(decodeDelivery(delivery({}), 'billing').occurredAt.getTime()).toBeGreaterThanOrEqual(before);
  });

  it('keeps the occurred-at time of a dead-letter copy in the stored headers, from the property or the old header', () => {
    const verdict = { reason: DEAD_LETTER_REASON.nonRetryable, error: 'boom', source: 'billing' };
    const fresh = delivery({});
    fresh.properties.timestamp = 1_800_000_000;
    const copy = encodeDeadLetterCopy(fresh, decodeDelivery(fresh, 'billing'), verdict);
    const stored = decodeDeadLetter({ content: fresh.content, fields: { exchange: 'mailroom.dead-letters', routingKey: 'billing' }, properties: copy });
    expect(stored.headers['x-mailroom-occurred-at']).toBe('2027-01-15T08:00:00.000Z');
    const old = delivery({ 'x-mailroom-occurred-at': '2026-11-30T10:00:00.250Z' });
    old.properties.timestamp = 1_800_000_000;
    const oldCopy = encodeDeadLetterCopy(old, decodeDelivery(old, 'billing'), verdict);
    const oldStored = decodeDeadLetter({ content: old.content, fields: { exchange: 'mailroom.dead-letters', routingKey: 'billing' }, properties: oldCopy });
    expect(oldStored.headers['x-mailroom-occurred-at']).toBe('2026-11-30T10:00:00.250Z');
  });

  it('counts attempts and keeps the origin only on copies back from the own delay queue', () => {
    const first = delivery(encodeOutboxHeaders({}, { key: null }));
    const retry = encodeRetryCopy(first, decodeDelivery(first, 'billing'));
    const back = decodeDelivery(delivery(retry.headers, { exchange: '', routingKey: 'billing' }), 'billing');
    expect(back).toMatchObject({ attempt: 2, fromRetry: true, origin: { exchange: 'orders', routingKey: 'order.placed' } });
    // The same headers through any other route are a sender's: no attempt count, no origin taken.
    const forged = decodeDelivery(delivery(retry.headers, { exchange: 'orders', routingKey: 'order.placed' }), 'billing');
    expect(forged).toMatchObject({ attempt: 1, fromRetry: false, origin: { exchange: 'orders', routingKey: 'order.placed' } });
    expect(retry.headers).not.toHaveProperty('x-death');
  });

  it('writes a dead-letter copy the sink reads back, deriving a stable id for a message without one', () => {
    const message = delivery({ 'x-death': [{}], custom: 'c' }, {}, 'not-a-uuid');
    const verdict = { reason: DEAD_LETTER_REASON.invalidMessageId, error: 'bad id', source: 'billing' };
    const copy = encodeDeadLetterCopy(message, decodeDelivery(message, 'billing'), verdict);
    expect(copy.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(encodeDeadLetterCopy(message, decodeDelivery(message, 'billing'), verdict).messageId).toBe(copy.messageId);
    const stored = decodeDeadLetter({ content: message.content, fields: { exchange: 'mailroom.dead-letters', routingKey: 'billing' }, properties: copy });
    expect(stored).toMatchObject({
      messageId: copy.messageId,
      source: 'billing',
      reason: 'invalid-message-id',
      error: 'bad id',
      attempts: 1,
      exchange: 'orders',
      routingKey: 'order.placed',
    });
    expect(Object.keys(stored.headers).sort()).toEqual(['custom', 'x-mailroom-attempts']);
    expect(replayHeaders(stored.headers)).toEqual({ custom: 'c' });
  });
});

describe('the envelope seal', () => {
  const seal = createEnvelopeSeal(Buffer.alloc(32, 7));
  const first = delivery(encodeOutboxHeaders({}, { key: null }));

  it('trusts a retry copy it sealed for this queue, and nothing else that takes the delay-queue route', () => {
    const copy = encodeRetryCopy(first, decodeDelivery(first, 'billing', seal), { seal, queue: 'billing' });
    const route = { exchange: '', routingKey: 'billing' };
    expect(decodeDelivery(delivery(copy.headers, route), 'billing', seal)).toMatchObject({ attempt: 2, fromRetry: true, forged: false });
    // A sender forges attempts, origin or the body; or replays a copy sealed for another queue.
    const tampered = [
      { ...copy.headers, 'x-mailroom-attempts': '99' },
      { ...copy.headers, 'x-mailroom-original-exchange': 'payments' },
    ];
    for (const headers of tampered) {
      expect(decodeDelivery(delivery(headers, route), 'billing', seal)).toMatchObject({ attempt: 1, fromRetry: false, forged: true, origin: { exchange: '' } });
    }
    const otherBody = { ...delivery(copy.headers, route), content: Buffer.from('{"n":2}') };
    expect(decodeDelivery(otherBody, 'billing', seal)).toMatchObject({ fromRetry: false, forged: true });
    const otherQueue = encodeRetryCopy(first, decodeDelivery(first, 'shipping', seal), { seal, queue: 'shipping' });
    expect(decodeDelivery(delivery(otherQueue.headers, route), 'billing', seal)).toMatchObject({ fromRetry: false, forged: true });
    expect(decodeDelivery(delivery({ 'x-mailroom-attempts': 99 }, route), 'billing', seal)).toMatchObject({ attempt: 1, forged: true });
  });

  it('stores an unsealed dead letter as unsealed, with no destination a replay could use', () => {
    const verdict = { reason: DEAD_LETTER_REASON.maxAttempts, error: 'x', source: 'billing' };
    const genuine = encodeDeadLetterCopy(first, decodeDelivery(first, 'billing', seal), verdict, seal);
    const onQueue = (properties: WireMessage['properties'], content = first.content): WireMessage => ({ content, fields: { exchange: 'dl', routingKey: 'billing' }, properties });
    expect(decodeDeadLetter(onQueue(genuine), seal)).toMatchObject({ sealed: true, source: 'billing', exchange: 'orders' });
    const forged = { ...genuine, headers: { ...genuine.headers, 'x-mailroom-original-exchange': 'payments' } };
    expect(decodeDeadLetter(onQueue(forged), seal)).toMatchObject({ sealed: false, source: 'unsealed', reason: 'unsealed', exchange: null, routingKey: null });
    expect(decodeDeadLetter(onQueue(genuine, Buffer.from('{"evil":1}')), seal)).toMatchObject({ sealed: false, source: 'unsealed' });
  });
});

describe('the dead_letters writer', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.close();
  });

  const record = (over: Partial<DeadLetterRecord> = {}): DeadLetterRecord => ({
    messageId: ID,
    source: 'relay',
    reason: DEAD_LETTER_REASON.unroutable,
    error: 'unroutable: 312 NO_ROUTE',
    attempts: 3,
    failedAt: new Date(),
    type: 'order.placed',
    exchange: 'orders',
    routingKey: 'order.placed',
    key: null,
    headersJson: '{}',
    payloadJson: '{"n":1}',
    body: null,
    ...over,
  });

  it('reads the seal key migration 5 wrote', async () => {
    const a = await loadEnvelopeSeal(toExecutor(db.pool), db.schema);
    const b = await loadEnvelopeSeal(toExecutor(db.pool), db.schema);
    expect(b.verify(['x'], Buffer.from('b'), a.seal(['x'], Buffer.from('b')))).toBe(true);
  });

  it('upserts by (source, message id), keeps the first failure and makes a replayed letter pending again', async () => {
    const executor = toExecutor(db.pool);
    await writeDeadLetters(executor, db.schema, [record(), record({ source: 'billing', payloadJson: null, body: Buffer.from([0, 1, 2]) })]);
    await db.pool.query(`UPDATE "${db.schema}".dead_letters SET replayed_at = now()`);
    await writeDeadLetters(executor, db.schema, [record({ attempts: 1, error: 'again', failedAt: new Date(Date.now() + 1000) })]);
    const rows = await db.pool.query<{ source: string; replayed_at: Date | null }>(`SELECT source, attempts, error, replayed_at, body, payload FROM "${db.schema}".dead_letters ORDER BY source`);
    expect(rows.rows).toMatchObject([
      { source: 'billing', attempts: 3, body: Buffer.from([0, 1, 2]), payload: null },
      { source: 'relay', attempts: 3, error: 'again', replayed_at: null, payload: { n: 1 } },
    ]);
    expect(rows.rows[0]?.replayed_at).not.toBeNull();
  });
});

describe('metrics registry', () => {
  it('renders prom-client text, shares a metric declared twice and skips a failing gauge', async () => {
    const registry = new MetricsRegistry();
    registry.counter('mailroom_test_total', 'A test counter.', ['kind']).inc({ kind: 'a' });
    registry.counter('mailroom_test_total', 'A test counter.', ['kind']).inc({ kind: 'a' }, 2);
    registry.gauge('mailroom_test_gauge', 'A gauge that fails.', async () => {
      throw new Error('database down');
    });
    const text = await registry.render();
    expect(text).toContain('mailroom_test_total{kind="a"} 3');
    expect(text).toContain('# TYPE mailroom_test_gauge gauge');
  });
});
