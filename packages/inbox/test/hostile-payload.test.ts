// Issue 9, defect 11 (consumer side): JSON of any depth reached the contract and the handler,
// and a payload with NUL (`\u0000`) that PostgreSQL refuses to store failed as a transient error,
// using every retry. Nesting is now capped before parsing (`maxJsonDepth`) and a payload PostgreSQL
// refuses (22021 / 22P05 from the handler's writes) is an invalid payload: one attempt, a dead letter.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { DEAD_LETTER_REASON, defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { decodeDeadLetter } from '@mailroom/core/internal';
import { WAIT, consumerFor, deadLetters, effects, publish, queueDepth, recordEffect, setupEnv, takeDeadLetterCopies, withDeadLetterSink, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

/** `{"orderId":…,"total":1,"extra":[[…]]}` nested `depth` levels deep in all. */
function nested(orderId: string, depth: number): Buffer {
  const inner = depth - 1; // the outer object is one level
  return Buffer.from(`{"orderId":${JSON.stringify(orderId)},"total":1,"extra":${'['.repeat(inner)}${']'.repeat(inner)}}`);
}

describe('hostile payloads (issue 9, defect 11)', () => {
  it('JSON nested deeper than the cap is dead-lettered unread as invalid-payload; at the cap it is handled', async () => {
    const runs: string[] = [];
    const record = recordEffect(env.db.schema);
    const consumer = consumerFor(
      env,
      async (ctx) => {
        runs.push(ctx.payload.orderId);
        await record(ctx);
      },
      { deadLetters: withDeadLetterSink(env) },
    );
    await consumer.start();
    // 100,000 levels (200 KB): a recursive walk of this would blow the stack.
    const deep = await publish(env, null, { raw: nested('deep', 100_000) });
    const over = await publish(env, null, { raw: nested('over', 65) });
    // Brackets inside strings are text, not nesting.
    const atCap = await publish(env, null, { raw: Buffer.from(nested('at-cap [[[{{{', 64).toString().replace('"total":1', '"total":1,"note":"]]]}}}\\"[[["')) });
    await vi.waitFor(async () => {
      expect((await deadLetters(env)).map((d) => d.message_id).sort(), 'the two dead letters').toEqual([deep, over].sort());
      expect(await effects(env, atCap), 'the payload at the cap handled').toBe(1);
    }, WAIT);
    const rows = new Map((await deadLetters(env)).map((d) => [d.message_id, d]));
    for (const id of [deep, over]) {
      expect(rows.get(id)).toMatchObject({ reason: DEAD_LETTER_REASON.invalidPayload, attempts: 1 });
      expect(rows.get(id)?.error).toMatch(/deeper than 64 levels \(maxJsonDepth\)/);
    }
    expect(runs).toEqual(['at-cap [[[{{{']);
    expect(consumer.stats).toMatchObject({ handled: 1, deadLettered: 2, retries: 0 });
    await consumer.stop();
  });

  it('maxJsonDepth is an option', async () => {
    const consumer = consumerFor(env, recordEffect(env.db.schema), { maxJsonDepth: 3, deadLetters: withDeadLetterSink(env) });
    await consumer.start();
    const ok = await publish(env, null, { raw: nested('three', 3) });
    const four = await publish(env, null, { raw: nested('four', 4) });
    await vi.waitFor(async () => {
      expect(await effects(env, ok)).toBe(1);
      expect((await deadLetters(env)).map((d) => d.message_id)).toContain(four);
    }, WAIT);
    await consumer.stop();
  });

  it('NUL in a payload that the handler writes to PostgreSQL (text and jsonb) is an invalid payload: one attempt, no retries', async () => {
    const FollowUp = defineMessage('order.noted', z.object({ note: z.string() }), { exchange: env.exchange });
    const attempts = new Map<string, number>();
    const consumer = consumerFor(
      env,
      async ({ payload, db, tx, message }) => {
        attempts.set(payload.orderId, (attempts.get(payload.orderId) ?? 0) + 1);
        if (payload.total === 1) {
          // text: 22021
          await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, payload.orderId]);
        } else {
          // jsonb, through the outbox: 22P05
          await enqueue(tx, FollowUp.create({ note: payload.orderId }), { schema: env.db.schema });
        }
      },
      { retry: { maxAttempts: 4, initialDelayMs: 100 } },
    );
    await consumer.start();
    const asText = await publish(env, { orderId: 'text\u0000nul', total: 1 });
    const asJsonb = await publish(env, { orderId: 'jsonb\u0000nul', total: 2 });
    const good = await publish(env, { orderId: 'fine', total: 1 });
    // Read from the dead-letter queue itself: storing a NUL payload is the sink's concern.
    await vi.waitFor(async () => {
      expect(await queueDepth(env, env.broker.name('dead')), 'both dead letters').toBe(2);
      expect(await effects(env, good)).toBe(1);
    }, WAIT);
    const letters = new Map((await takeDeadLetterCopies(env)).map((m) => [String(m.properties.messageId), decodeDeadLetter(m)]));
    for (const id of [asText, asJsonb]) {
      const letter = letters.get(id);
      expect(letter, `attempts: ${JSON.stringify([...attempts])}`).toMatchObject({ reason: DEAD_LETTER_REASON.invalidPayload, attempts: 1 });
      expect(letter?.error).toMatch(/PostgreSQL refused/);
    }
    expect(letters.get(asText)?.error).toMatch(/22021/);
    expect(letters.get(asJsonb)?.error).toMatch(/22P05/);
    expect(attempts.get('text\u0000nul')).toBe(1);
    expect(attempts.get('jsonb\u0000nul')).toBe(1);
    expect(consumer.stats).toMatchObject({ retries: 0, handled: 1 });
    await consumer.stop();
  });
});
