// The consumer no longer drains dead letters itself: a sink is handed in (any object with start()
// and stop(); @mailroom/dlq's createDeadLetterSink fits), or dead letters wait on the broker.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Queryable } from '@mailroom/core';
import { createDeadLetterSink } from '@mailroom/dlq';
import { createConsumer, handler, type ConsumerOptions } from '@mailroom/inbox';
import { testUrls } from '../../../test/helpers.js';
import { OrderPlaced, WAIT, consumerFor, deadLetterTopology, deadLetters, publish, recordEffect, setupEnv, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

async function deadQueueDepth(): Promise<number> {
  const ch = await env.broker.connection.createChannel();
  try {
    return (await ch.checkQueue(deadLetterTopology(env).queue)).messageCount;
  } finally {
    await ch.close();
  }
}

describe('dead-letter sink', () => {
  it('without a sink, a dead letter waits in the durable dead-letter queue until a sink drains it into the store', async () => {
    const consumer = consumerFor(env, recordEffect(env.db.schema));
    await consumer.start();
    const id = await publish(env, { orderId: 7 }); // an invalid payload: dead-lettered at once
    await vi.waitFor(async () => expect(await deadQueueDepth(), 'the dead letter on the queue').toBe(1), WAIT);
    expect(await deadLetters(env)).toHaveLength(0);
    // The consumer counts the dead letter after its ack, a moment after the copy is on the queue.
    await vi.waitFor(() => expect(consumer.stats).toMatchObject({ deadLettered: 1 }), WAIT);
    const sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: deadLetterTopology(env) });
    try {
      await sink.start();
      await vi.waitFor(async () => {
        expect((await deadLetters(env)).map((d) => [d.message_id, d.reason])).toEqual([[id, 'invalid-payload']]);
        expect(await deadQueueDepth()).toBe(0);
      }, WAIT);
    } finally {
      await sink.stop();
      await consumer.stop();
    }
  });

  it('starts the sink it is given before subscribing, and stops it in stop()', async () => {
    const calls: string[] = [];
    const sink = {
      async start() {
        await new Promise((resolve) => setTimeout(resolve, 100));
        calls.push('sink started');
      },
      async stop() {
        calls.push('sink stopped');
      },
    };
    const consumer = consumerFor(env, recordEffect(env.db.schema), { deadLetters: { ...deadLetterTopology(env), sink } });
    consumer.on('subscribed', () => calls.push('subscribed'));
    await consumer.start();
    expect(calls).toEqual(['sink started', 'subscribed']);
    await consumer.stop();
    expect(calls).toEqual(['sink started', 'subscribed', 'sink stopped']);
  });

  it('a sink whose stop() never settles holds stop() up only for stopTimeoutMs', async () => {
    let stopCalled = false;
    const sink = {
      async start() {},
      stop() {
        stopCalled = true;
        return new Promise<void>(() => undefined);
      },
    };
    const consumer = consumerFor(env, recordEffect(env.db.schema), { deadLetters: { ...deadLetterTopology(env), sink }, stopTimeoutMs: 300 });
    await consumer.start();
    const started = performance.now();
    await consumer.stop();
    const took = performance.now() - started;
    expect(stopCalled).toBe(true);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(3000);
  });

  it('refuses the old boolean `sink` with a message saying what to pass', () => {
    const base = {
      name: 'x',
      db: env.db.pool as Queryable,
      amqp: testUrls().amqpUrl,
      handlers: [handler(OrderPlaced(env.exchange), async () => undefined)],
    };
    for (const sink of [true, false]) {
      const options = { ...base, deadLetters: { sink } } as unknown as ConsumerOptions;
      expect(() => createConsumer(options)).toThrow(/"deadLetters\.sink": the consumer no longer drains dead letters itself: pass a sink, e\.g\. `sink: createDeadLetterSink\(/);
    }
    expect(() => createConsumer({ ...base, deadLetters: { sink: {} as never } })).toThrow(/"deadLetters\.sink": expected a dead-letter sink \(an object with start\(\) and stop\(\)\)/);
  });
});
