// Issue 9, defect 3: a NUL in the AMQP type, a header name or value, or the ordering key made
// every insert into dead_letters fail, and the sink requeued the delivery every second forever:
// twenty of them (the prefetch) stopped dead-letter storage for everyone.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createDeadLetterSink, DEAD_LETTER_REASON } from '@mailroom/dlq';
import { testUrls } from '../../../test/helpers.js';
import { deadLetterCopy, publishDeadLetters, queueDepth, setupSinkEnv, storedRows, type SinkEnv } from './sink-support.js';

let env: SinkEnv;
beforeAll(async () => {
  env = await setupSinkEnv();
});
afterAll(async () => {
  await env.cleanup();
});

it('stores 26 dead letters with NUL in the type, a header name, a header value or the key once each, and a genuine one within seconds', async () => {
  const sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: env.topology });
  await sink.start();
  try {
    const hostile = [];
    for (let i = 0; i < 6; i++) {
      hostile.push(deadLetterCopy({ type: `order\u0000placed.${i}` }, { seal: env.seal }));
      hostile.push(deadLetterCopy({ headers: { [`x-name\u0000${i}`]: 'v' } }, { seal: env.seal }));
      hostile.push(deadLetterCopy({ headers: { 'x-note': `a\u0000b${i}`, 'x-nested': { deep: [`\u0000${i}`] } } }, { seal: env.seal }));
      hostile.push(deadLetterCopy({ key: `customer\u0000${i}` }, { seal: env.seal }));
    }
    // The error header is not sealed; and a forger's copy with NUL in what it claims.
    hostile.push(deadLetterCopy({}, { seal: env.seal, error: 'Error: \u0000 in the error' }));
    hostile.push(deadLetterCopy({ type: 'order\u0000forged' }, { source: 'billing\u0000' }));
    await publishDeadLetters(env, hostile);
    // The genuine one comes after all of them: more hostile messages than the sink's prefetch.
    const genuineId = randomUUID();
    await publishDeadLetters(env, [deadLetterCopy({ messageId: genuineId }, { seal: env.seal })]);

    await vi.waitFor(async () => expect((await storedRows(env)).map((r) => r.message_id)).toContain(genuineId), { timeout: 5000, interval: 50 });
    await vi.waitFor(async () => expect(await storedRows(env)).toHaveLength(27), { timeout: 10_000, interval: 50 });
    await vi.waitFor(async () => expect(await queueDepth(env, env.topology.queue)).toBe(0), { timeout: 10_000, interval: 50 });
    const rows = await storedRows(env);
    // Each stored once: no redelivery, no second row.
    expect(new Set(rows.map((r) => r.message_id)).size).toBe(27);
    expect(sink.stats.stored).toBe(27);
    expect(sink.stats.failures).toBe(0);

    // What was replaced is said so: in the error and in the stored headers, and the text holds no NUL.
    const byType = rows.filter((r) => r.type?.startsWith('order\ufffdplaced.') === true);
    expect(byType).toHaveLength(6);
    for (const row of rows.filter((r) => r.message_id !== genuineId)) {
      expect(row.error).toMatch(/replaced by U\+FFFD/);
      expect(JSON.stringify(row)).not.toContain('\\u0000');
    }
    expect(rows.filter((r) => r.key?.startsWith('customer\ufffd') === true)).toHaveLength(6);
    const genuine = rows.find((r) => r.message_id === genuineId);
    expect(genuine).toMatchObject({ source: 'billing', reason: DEAD_LETTER_REASON.maxAttempts, type: 'order.placed', exchange: 'orders', routing_key: 'order.placed' });
    expect(genuine?.error).toBe('Error: ledger locked');
  } finally {
    await sink.stop();
  }
});
