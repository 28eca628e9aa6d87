// Sequenced failures: with ordering on, a handler failure is retried in place while its key
// waits (later messages of the key never overtake it), and other keys keep flowing, also those
// that share its partition.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createConsumer, handler, type Consumer, type ConsumerOptions, type MessageMetadata } from '@mailroom/inbox';
import { testUrls } from '../../../test/helpers.js';
import { WAIT, deadLetterTopology, queueDepth, setupEnv, type Env } from './support.js';

const Step = (exchange: string) => defineMessage('key.step', z.object({ key: z.string(), seq: z.number().int() }), { exchange });

let env: Env;
const cleanupQueues = new Set<string>();
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  const ch = await env.broker.connection.createChannel();
  for (const q of cleanupQueues) await ch.deleteQueue(q).catch(() => undefined);
  await ch.close().catch(() => undefined);
  await env.cleanup();
});

async function publishSteps(exchange: string, keys: string[], perKey: number): Promise<void> {
  const pending: Array<Promise<void>> = [];
  for (let seq = 0; seq < perKey; seq++) {
    for (const key of keys) {
      pending.push(
        new Promise<void>((resolve, reject) => {
          env.publisher.publish(
            exchange,
            'key.step',
            Buffer.from(JSON.stringify({ key, seq })),
            { messageId: randomUUID(), type: 'key.step', contentType: 'application/json', persistent: true, headers: { 'x-mailroom-key': key } },
            (err: unknown) => (err ? reject(err instanceof Error ? err : new Error('nacked')) : resolve()),
          );
        }),
      );
    }
  }
  await Promise.all(pending);
}

interface Run {
  consumer: Consumer;
  /** (key, seq, attempt) of each committed handler, in commit order. */
  handled: Array<{ key: string; seq: number; attempt: number }>;
  /** How many of the other keys' messages were handled while the failing message waited. */
  othersWhileWaiting: () => number;
}

/** A consumer whose handler fails `failures` times on key `a`, seq 2, then succeeds. */
function failingRun(name: string, exchange: string, failures: number, overrides: Partial<ConsumerOptions> = {}): Run {
  const handled: Run['handled'] = [];
  let failed = 0;
  let firstFailureAt = -1;
  let recoveredAt = -1;
  const consumer = createConsumer({
    name,
    db: env.db.pool,
    amqp: testUrls().amqpUrl,
    schema: env.db.schema,
    ordering: true,
    prefetch: 20,
    retry: { initialDelayMs: 400, multiplier: 1, maxAttempts: 5 },
    deadLetters: deadLetterTopology(env),
    stopTimeoutMs: 5000,
    handlers: [
      handler(Step(exchange), async ({ payload, message }: { payload: { key: string; seq: number }; message: MessageMetadata }) => {
        if (payload.key === 'a' && payload.seq === 2 && failed < failures) {
          failed++;
          if (firstFailureAt < 0) firstFailureAt = handled.length;
          throw new Error(`refused ${failed}`);
        }
        // Pushed before the commit; the commit cannot fail here (no conflicts), so this is the commit order.
        if (payload.key === 'a' && payload.seq === 2) recoveredAt = handled.length;
        handled.push({ key: payload.key, seq: payload.seq, attempt: message.attempt });
      }),
    ],
    ...overrides,
  });
  env.consumers.push(consumer);
  return {
    consumer,
    handled,
    othersWhileWaiting: () => handled.slice(firstFailureAt, recoveredAt < 0 ? undefined : recoveredAt).filter((h) => h.key !== 'a').length,
  };
}

function seqsOf(run: Run, key: string): number[] {
  return run.handled.filter((h) => h.key === key).map((h) => h.seq);
}

const inOrder = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

describe('sequenced failures (ordering on)', () => {
  it('one work queue: a failing message is retried in place, never overtaken by later messages of its key, while other keys flow', async () => {
    const name = env.broker.name('seq-queue');
    const exchange = env.broker.name('seq-queue-events');
    const run = failingRun(name, exchange, 2);
    await run.consumer.start();
    await publishSteps(exchange, ['a', 'b', 'c', 'd'], 10);
    await vi.waitFor(() => expect(run.handled).toHaveLength(40), WAIT);
    expect(seqsOf(run, 'a')).toEqual(inOrder(10));
    for (const key of ['b', 'c', 'd']) expect(seqsOf(run, key)).toEqual(inOrder(10));
    // The third attempt made it, in place: no trip through a delay queue.
    expect(run.handled.find((h) => h.key === 'a' && h.seq === 2)?.attempt).toBe(3);
    expect(run.consumer.stats).toMatchObject({ failures: 2, retries: 2, deadLettered: 0 });
    for (const q of run.consumer.delayQueues) expect(await queueDepth(env, q)).toBe(0);
    // Other keys kept flowing while key a waited (about 800 ms).
    expect(run.othersWhileWaiting()).toBeGreaterThan(0);
    await run.consumer.stop();
  });

  it('partitioned, all keys in one partition: the failing key waits in place and the other keys of that partition keep flowing', async () => {
    const name = env.broker.name('seq-part');
    const exchange = env.broker.name('seq-part-events');
    cleanupQueues.add(`${name}.p000`);
    const run = failingRun(name, exchange, 2, { partitions: { count: 1, rebalanceMs: 200 } });
    await run.consumer.start();
    await vi.waitFor(() => expect(run.consumer.partitions).toEqual([0]), WAIT);
    await publishSteps(exchange, ['a', 'b', 'c', 'd'], 10);
    await vi.waitFor(() => expect(run.handled).toHaveLength(40), WAIT);
    for (const key of ['a', 'b', 'c', 'd']) expect(seqsOf(run, key)).toEqual(inOrder(10));
    expect(run.handled.find((h) => h.key === 'a' && h.seq === 2)?.attempt).toBe(3);
    expect(run.othersWhileWaiting()).toBeGreaterThan(0);
    await run.consumer.stop();
  });

  it('exhausted in place: the message becomes a dead letter after maxAttempts (counted here, not by the broker), and its key is parked behind it (see parking.test.ts)', async () => {
    const name = env.broker.name('seq-dead');
    const exchange = env.broker.name('seq-dead-events');
    const run = failingRun(name, exchange, 100, { retry: { initialDelayMs: 100, multiplier: 1, maxAttempts: 3 } });
    const dead: number[] = [];
    run.consumer.on('deadLettered', (info) => dead.push(info.attempt));
    await run.consumer.start();
    await publishSteps(exchange, ['a', 'b'], 5);
    // a/3 and a/4 are parked behind a/2 (dead letters with reason `parked`), not handled out of order.
    await vi.waitFor(() => expect(dead).toHaveLength(3), WAIT);
    expect(dead).toEqual([3, 1, 1]);
    expect(run.handled).toHaveLength(7);
    expect(seqsOf(run, 'a')).toEqual([0, 1]);
    expect(seqsOf(run, 'b')).toEqual(inOrder(5));
    expect(run.consumer.stats).toMatchObject({ failures: 3, retries: 2, deadLettered: 3 });
    await run.consumer.stop();
  });
});
