import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { deriveMessageId } from '@mailroom/core/internal';
import { WAIT, consumerFor, deadLetters, effects, publish, recordEffect, setupEnv, withDeadLetterSink, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

describe('bad input ends in dead letters (must show 4)', () => {
  it('invalid payload, non-JSON body, unknown type, oversized body, missing or non-UUID id, forged x-death: each dead-lettered once with its reason', async () => {
    const seen = new Map<string, number[]>();
    const record = recordEffect(env.db.schema);
    const consumer = consumerFor(
      env,
      async (ctx) => {
        if (ctx.payload.orderId.startsWith('always-fails')) {
          seen.set(ctx.payload.orderId, [...(seen.get(ctx.payload.orderId) ?? []), ctx.message.attempt]);
          throw new Error('downstream is down');
        }
        await record(ctx);
      },
      { maxBodyBytes: 2048, retry: { maxAttempts: 2, initialDelayMs: 100 }, deadLetters: withDeadLetterSink(env) },
    );
    await consumer.start();
    const invalid = await publish(env, { orderId: 42 });
    const notJson = await publish(env, null, { raw: Buffer.from('{"orderId": "o-1", total: oops') });
    const unknown = await publish(env, { orderId: 'o-3', total: 1 }, { type: 'order.cancelled', routingKey: 'order.placed' });
    const oversized = await publish(env, { orderId: 'x'.repeat(4096), total: 1 });
    const noIdBody = Buffer.from(JSON.stringify({ orderId: 'no-id', total: 1 }));
    await publish(env, null, { messageId: null, raw: noIdBody });
    await publish(env, null, { messageId: null, raw: noIdBody });
    await publish(env, { orderId: 'bad-id', total: 1 }, { messageId: 'order-17' });
    const forgedHeaders = {
      'x-death': [{ count: 99, reason: 'rejected', queue: consumer.queue, exchange: '', 'routing-keys': [consumer.queue] }],
      // A sender forging mailroom's attempt count (spelled out: this is the hostile input).
      'x-mailroom-attempts': 99,
    };
    // Through the exchange the queue is bound to, and straight to the queue through the default
    // exchange: the route a delay queue's copies come back by, where only a valid seal counts.
    const forged = await publish(env, { orderId: 'always-fails', total: 1 }, { headers: forgedHeaders });
    const forgedDirect = await publish(env, { orderId: 'always-fails-direct', total: 1 }, { exchange: '', routingKey: consumer.queue, headers: forgedHeaders });
    const good = await publish(env, { orderId: 'fine', total: 1 });

    // The state asserted: eight rows in the store (the two copies without an id share one) and the good message's effect.
    await vi.waitFor(
      async () => {
        expect(await deadLetters(env)).toHaveLength(8);
        expect(await effects(env, good)).toBe(1);
      },
      { ...WAIT, timeout: 20_000 },
    );
    await sleep(300);
    const rows = await deadLetters(env);
    const byId = new Map(rows.map((r) => [r.message_id, r]));
    expect(rows).toHaveLength(8);
    expect(byId.get(invalid)).toMatchObject({ reason: 'invalid-payload', type: 'order.placed', payload: { orderId: 42 } });
    expect(byId.get(invalid)?.error).toMatch(/orderId/);
    expect(byId.get(notJson)).toMatchObject({ reason: 'not-json', payload: null });
    expect(byId.get(notJson)?.body?.toString()).toBe('{"orderId": "o-1", total: oops');
    expect(byId.get(unknown)).toMatchObject({ reason: 'unknown-type', type: 'order.cancelled' });
    expect(byId.get(unknown)?.error).toContain('"order.cancelled"');
    expect(byId.get(oversized)).toMatchObject({ reason: 'oversized' });
    expect(byId.get(oversized)?.error).toMatch(/over the limit of 2048/);
    const derived = deriveMessageId({ source: consumer.queue, rawMessageId: null, body: noIdBody });
    expect(byId.get(derived)).toMatchObject({ reason: 'missing-message-id' });
    const badId = rows.find((r) => r.reason === 'invalid-message-id');
    expect(badId?.error).toContain('"order-17"');
    // The forged headers change nothing: mailroom counts attempts itself, 1 and 2, on either route.
    expect(byId.get(forged)).toMatchObject({ reason: 'max-attempts', attempts: 2, source: consumer.queue });
    expect(byId.get(forgedDirect)).toMatchObject({ reason: 'max-attempts', attempts: 2, source: consumer.queue });
    expect(seen.get('always-fails')).toEqual([1, 2]);
    expect(seen.get('always-fails-direct')).toEqual([1, 2]);
    expect(await effects(env, good)).toBe(1);
    expect(await effects(env)).toBe(1);
    // Failures: the invalid payload (found inside the transaction) and the forged messages' two attempts each.
    expect(consumer.stats).toMatchObject({ handled: 1, deadLettered: 9, retries: 2, failures: 5, forged: 1 });
    // No loop: the work queue and the dead-letter queue are empty.
    const ch = await env.broker.connection.createChannel();
    expect((await ch.checkQueue(consumer.queue)).messageCount).toBe(0);
    expect((await ch.checkQueue(env.broker.name('dead'))).messageCount).toBe(0);
    await ch.close();
    await consumer.stop();
  });
});
