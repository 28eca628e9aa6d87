// Issue 9, defect 4 (sink side): anything published straight to the dead-letter exchange was
// stored as a genuine dead letter with the source and destination it claimed, and a replay then
// published it with the relay's credentials wherever the sender chose.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { DEAD_LETTER_REASON, MetricsRegistry } from '@mailroom/core';
import { createDeadLetterSink, createDeadLetterStore, type DeadLetterStore } from '@mailroom/dlq';
import { testUrls } from '../../../test/helpers.js';
import { deadLetterCopy, publishDeadLetters, queueDepth, setupSinkEnv, storedRows, type SinkEnv } from './sink-support.js';

let env: SinkEnv;
let store: DeadLetterStore;
beforeAll(async () => {
  env = await setupSinkEnv();
  store = createDeadLetterStore({ db: env.db.pool, schema: env.db.schema });
});
afterAll(async () => {
  await env.cleanup();
});

async function outboxIds(): Promise<string[]> {
  const result = await env.db.pool.query<{ id: string }>(`SELECT message_id::text AS id FROM "${env.db.schema}".outbox ORDER BY id`);
  return result.rows.map((r) => r.id);
}

it('stores a forged or tampered dead letter as unsealed, with no destination, and never replays it; a sealed one keeps its source and destination', async () => {
  const sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: env.topology });
  await sink.start();
  try {
    const genuineId = randomUUID();
    const forgedId = randomUUID();
    const tamperedId = randomUUID();
    const genuine = deadLetterCopy({ messageId: genuineId }, { seal: env.seal });
    // What any sender who can publish to the dead-letter exchange writes: mailroom's headers, no seal.
    const forged = deadLetterCopy({ messageId: forgedId, exchange: 'amq.direct', routingKey: 'payments.refund' }, { source: 'billing' });
    // A genuine copy whose body was swapped: its seal no longer matches.
    const sealed = deadLetterCopy({ messageId: tamperedId }, { seal: env.seal });
    const tampered = { body: Buffer.from('{"orderId":"evil","total":1000000}'), properties: sealed.properties };
    await publishDeadLetters(env, [genuine, forged, tampered]);
    await vi.waitFor(async () => expect(await storedRows(env)).toHaveLength(3), { timeout: 10_000, interval: 50 });
    await vi.waitFor(async () => expect(await queueDepth(env, env.topology.queue)).toBe(0), { timeout: 10_000, interval: 50 });

    const rows = await storedRows(env);
    const unsealed = rows.filter((r) => r.source !== 'billing');
    expect(unsealed).toHaveLength(2);
    for (const row of unsealed) {
      expect(row).toMatchObject({ source: 'unsealed', reason: DEAD_LETTER_REASON.unsealed, exchange: null, routing_key: null });
    }
    expect(rows.find((r) => r.message_id === genuineId)).toMatchObject({ source: 'billing', exchange: 'orders', routing_key: 'order.placed' });

    // list and show say where a replay would go, or that it cannot go anywhere.
    const listed = await store.list();
    expect(listed.find((d) => d.messageId === genuineId)?.replayTarget).toEqual({ replayable: true, exchange: 'orders', routingKey: 'order.placed' });
    for (const d of listed.filter((x) => x.source === 'unsealed')) {
      expect(d.replayTarget).toEqual({ replayable: false, why: expect.stringMatching(/no valid mailroom seal/) as unknown });
    }
    const all = listed.map((d) => d.id);
    const result = await store.replay({ ids: all });
    expect(result.messageIds).toEqual([genuineId]);
    expect(result.skipped.map((s) => s.why)).toEqual([expect.stringMatching(/no valid mailroom seal/), expect.stringMatching(/no valid mailroom seal/)]);
    expect(await outboxIds()).toEqual([genuineId]);

    // Rows another tool wrote as unsealed are never sent anywhere either, whatever their columns say.
    const written = randomUUID();
    await store.record({ messageId: written, source: 'unsealed', reason: DEAD_LETTER_REASON.unsealed, type: 'order.placed', exchange: 'orders', routingKey: 'order.placed', payload: { orderId: 'x', total: 1 } });
    expect((await store.show(written))?.replayTarget).toMatchObject({ replayable: false });
    expect((await store.replay({ ids: [written], force: true })).count).toBe(0);
    expect(await outboxIds()).toEqual([genuineId]);
  } finally {
    await sink.stop();
  }
});

it('counts unsealed dead letters in mailroom_dead_letter_sink_unsealed_total', async () => {
  const metrics = new MetricsRegistry();
  const sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: env.topology, metrics });
  await sink.start();
  try {
    const before = (await storedRows(env)).length;
    await publishDeadLetters(env, [deadLetterCopy({}, { source: 'shipping' }), deadLetterCopy({}, { seal: env.seal, source: 'shipping' })]);
    await vi.waitFor(async () => expect(await storedRows(env)).toHaveLength(before + 2), { timeout: 10_000, interval: 50 });
    await vi.waitFor(() => expect(sink.stats).toMatchObject({ stored: 2, unsealed: 1 }), { timeout: 10_000, interval: 50 });
    const text = await metrics.render();
    expect(text).toMatch(/^mailroom_dead_letter_sink_unsealed_total 1$/m);
    expect(text).toMatch(/^mailroom_dead_letter_sink_stored_total\{form="full"\} 2$/m);
  } finally {
    await sink.stop();
  }
});
