// Issue 9, defect 1: a delivery whose headers fit amqplib's 64 KiB field-table encoder, but not
// once mailroom adds its retry or dead-letter headers, made the copy's publish throw RangeError;
// the delivery was nack-requeued at once, forever, and `prefetch` of them starved every good one.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEAD_LETTER_REASON } from '@mailroom/core';
import { NonRetryableError } from '@mailroom/inbox';
import { decodeDeadLetter, deriveMessageId, loadEnvelopeSeal, toExecutor } from '@mailroom/core/internal';
import { WAIT, consumerFor, effects, publish, queueDepth, recordEffect, setupEnv, takeDeadLetterCopies, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

// Fits the 65,536-byte table with the envelope headers the test publisher adds; the consumer's
// copies (reason, error, source, attempts, origin, seal, publish id) do not fit any more.
const PAD = 'p'.repeat(65_400);

describe('a copy that cannot be encoded (issue 9, defect 1)', () => {
  it('is dead-lettered once with the body and trimmed headers; every good message is handled and the handler runs a bounded number of times', async () => {
    const runs = new Map<string, number>();
    const record = recordEffect(env.db.schema);
    const prefetch = 3;
    const consumer = consumerFor(
      env,
      async (ctx) => {
        runs.set(ctx.payload.orderId, (runs.get(ctx.payload.orderId) ?? 0) + 1);
        if (ctx.payload.orderId.startsWith('fails')) throw new Error('downstream is down');
        await record(ctx);
      },
      { prefetch, retry: { maxAttempts: 3, initialDelayMs: 100 } },
    );
    await consumer.start();
    // `prefetch` of each kind: before the fix, either kind alone held every delivery slot.
    const badIds: string[] = [];
    const failing: string[] = [];
    for (let i = 0; i < prefetch; i++) {
      // Refused by the validation ladder: its dead-letter copy outgrows the table.
      badIds.push(await publish(env, { orderId: `bad-id-${i}`, total: 1 }, { messageId: `not-a-uuid-${i}`, headers: { 'x-pad': PAD, 'x-small': 'kept' } }));
      // A handler that throws: its retry copy outgrows the table.
      failing.push(await publish(env, { orderId: `fails-${i}`, total: 1 }, { headers: { 'x-pad': PAD, 'x-small': 'kept' } }));
    }
    const good = await Promise.all(Array.from({ length: 5 }, (_, i) => publish(env, { orderId: `good-${i}`, total: i })));

    await vi.waitFor(async () => {
      for (const id of good) expect(await effects(env, id), `good message ${id} handled (handler runs so far: ${JSON.stringify([...runs])})`).toBe(1);
      expect(await queueDepth(env, env.broker.name('dead')), 'one dead letter per bad message').toBe(2 * prefetch);
    }, { ...WAIT, timeout: 15_000 });
    await consumer.stop();
    expect(await queueDepth(env, consumer.queue), 'nothing left in (or given back to) the work queue').toBe(0);
    for (const q of consumer.delayQueues) expect(await queueDepth(env, q), `nothing in ${q}`).toBe(0);

    const seal = await loadEnvelopeSeal(toExecutor(env.db.pool), env.db.schema);
    const copies = await takeDeadLetterCopies(env);
    expect(copies).toHaveLength(2 * prefetch);
    const letters = copies.map((m) => ({ message: m, letter: decodeDeadLetter(m, seal) }));
    for (const { message, letter } of letters) {
      expect(letter.sealed, 'the sink accepts it: sealed').toBe(true);
      expect(letter.source).toBe(consumer.queue);
      // The producer's large header was dropped, its small one kept, and the error says so.
      expect(letter.headers['x-pad']).toBeUndefined();
      expect(String(letter.headers['x-small'])).toBe('kept');
      expect(letter.error).toMatch(/x-pad/);
      expect(letter.error).toMatch(/65536|64 KiB/);
      expect(JSON.parse(message.content.toString()), 'the body travels whole').toMatchObject({ total: 1 });
    }
    // The bad ids are stored under ids derived from the queue, the id they came with and the body.
    const derived = badIds.map((raw, i) => deriveMessageId({ source: consumer.queue, rawMessageId: raw, body: Buffer.from(JSON.stringify({ orderId: `bad-id-${i}`, total: 1 })) }));
    const invalidIds = letters.filter((l) => l.letter.reason === DEAD_LETTER_REASON.invalidMessageId);
    expect(invalidIds.map((l) => l.letter.messageId).sort()).toEqual(derived.sort());
    const unpublishable = letters.filter((l) => l.letter.reason === DEAD_LETTER_REASON.unpublishable);
    expect(unpublishable.map((l) => l.letter.messageId).sort()).toEqual([...failing].sort());
    for (const l of unpublishable) {
      expect(l.letter.error).toMatch(/retry copy/);
      expect(l.letter.error).toContain('downstream is down');
      expect(l.letter.attempts).toBe(1);
    }
    // Bounded work: each failing message ran its handler once, each bad id never.
    for (let i = 0; i < prefetch; i++) {
      expect(runs.get(`fails-${i}`), `handler runs of fails-${i}`).toBe(1);
      expect(runs.get(`bad-id-${i}`)).toBeUndefined();
    }
    expect(consumer.stats).toMatchObject({ handled: 5, deadLettered: 2 * prefetch, retries: 0, requeued: 0 });
  });

  it('thousands of small headers near the limit: the copy drops only as many as it must, and says how many', async () => {
    const consumer = consumerFor(env, async () => {
      throw new NonRetryableError('rejected');
    });
    await consumer.start();
    await takeDeadLetterCopies(env); // what an earlier test may have left
    // 4,080 headers of 16 encoded bytes each: 65,280 bytes, the table still fits for the publisher.
    const headers = Object.fromEntries(Array.from({ length: 4080 }, (_, i) => [`h${String(i).padStart(4, '0')}`, 'xxxxx']));
    const id = await publish(env, { orderId: 'many', total: 1 }, { headers });
    await vi.waitFor(async () => expect(await queueDepth(env, env.broker.name('dead')), 'the dead letter').toBe(1), WAIT);
    const [copy] = await takeDeadLetterCopies(env);
    const letter = decodeDeadLetter(copy!, await loadEnvelopeSeal(toExecutor(env.db.pool), env.db.schema));
    expect(letter).toMatchObject({ messageId: id, reason: DEAD_LETTER_REASON.nonRetryable, sealed: true });
    const kept = Object.keys(letter.headers).filter((name) => /^h\d{4}$/.test(name)).length;
    const dropped = 4080 - kept;
    expect(dropped, 'some headers dropped').toBeGreaterThan(0);
    expect(dropped, 'only as many as needed (the copy adds well under 2 KiB)').toBeLessThan(200);
    expect(letter.error).toContain(`dropped ${dropped} header(s)`);
    expect(letter.error).toMatch(/and \d+ more/);
    expect(letter.error).toMatch(/^NonRetryableError: rejected/);
    await consumer.stop();
  });
});
