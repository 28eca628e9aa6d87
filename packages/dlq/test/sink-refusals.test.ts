// Issue 9, defect 3 (the rule behind it): a dead letter the store refuses is never requeued
// forever. A refusal of its content falls back to a minimal row, then to the parked queue (each
// counted); a database that is away is waited for in place, with a backoff, never a hot loop.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { MetricsRegistry } from '@mailroom/core';
import { createDeadLetterSink, createDeadLetterStore, DEAD_LETTER_REASON, type DeadLetterStore } from '@mailroom/dlq';
import { testUrls } from '../../../test/helpers.js';
import { deadLetterCopy, publishDeadLetters, queueDepth, setupSinkEnv, storedRows, type SinkEnv } from './sink-support.js';

let env: SinkEnv;
let store: DeadLetterStore;
beforeAll(async () => {
  env = await setupSinkEnv();
  store = createDeadLetterStore({ db: env.db.pool, schema: env.db.schema });
  // A rule of the database the sink cannot know about: some rows are refused, by content.
  const s = `"${env.db.schema}"`;
  await env.db.pool.query(`
    CREATE FUNCTION ${s}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.type = 'refused.type' THEN RAISE EXCEPTION 'type refused by a check' USING ERRCODE = '22023'; END IF;
      IF NEW.source = 'refused-source' THEN RAISE EXCEPTION 'source refused by a check' USING ERRCODE = '23514'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ${s}.dead_letters FOR EACH ROW EXECUTE FUNCTION ${s}.refuse();`);
});
afterAll(async () => {
  await env.cleanup();
});

const WAIT = { timeout: 10_000, interval: 50 };

it('stores minimally what the store refuses in full, parks what it refuses even then, and keeps storing the rest', async () => {
  const metrics = new MetricsRegistry();
  const sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: env.topology, metrics });
  await sink.start();
  try {
    const minimalId = randomUUID();
    const parkedId = randomUUID();
    const goodId = randomUUID();
    await publishDeadLetters(env, [
      deadLetterCopy({ messageId: minimalId, type: 'refused.type' }, { seal: env.seal }),
      deadLetterCopy({ messageId: parkedId }, { seal: env.seal, source: 'refused-source' }),
      deadLetterCopy({ messageId: goodId }, { seal: env.seal }),
    ]);
    await vi.waitFor(async () => expect((await storedRows(env)).map((r) => r.message_id).sort()).toEqual([minimalId, goodId].sort()), WAIT);
    await vi.waitFor(async () => expect(await queueDepth(env, `${env.topology.queue}.parked`)).toBe(1), WAIT);
    await vi.waitFor(async () => expect(await queueDepth(env, env.topology.queue)).toBe(0), WAIT);

    const minimal = await store.show(minimalId);
    expect(minimal).toMatchObject({ source: 'billing', reason: DEAD_LETTER_REASON.maxAttempts, type: null, exchange: null, routingKey: null, key: null, payload: null });
    expect(minimal?.body).not.toBeNull();
    expect(minimal?.changes).toEqual([expect.stringMatching(/^stored minimally: the store refused the full row \(.*22023.*type refused by a check/)]);
    expect(minimal?.replayTarget).toMatchObject({ replayable: false });
    expect(sink.stats).toMatchObject({ stored: 2, minimal: 1, parked: 1 });
    const text = await metrics.render();
    expect(text).toMatch(/^mailroom_dead_letter_sink_stored_total\{form="minimal"\} 1$/m);
    expect(text).toMatch(/^mailroom_dead_letter_sink_parked_total 1$/m);
    expect(text).toMatch(/^mailroom_dead_letter_sink_store_failures_total\{cause="content"\} 3$/m);
  } finally {
    await sink.stop();
  }
  // The parked copy is the message as it arrived: move it back once the cause is fixed.
  const ch = await env.broker.connection.createChannel();
  const parked = await ch.get(`${env.topology.queue}.parked`, { noAck: true });
  expect(parked && parked.properties.messageId).toMatch(/^[0-9a-f-]{36}$/);
  await ch.close();
});

it('waits in place, with a backoff, while the table is away, and stores the dead letter once it is back', async () => {
  const sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: env.topology });
  await sink.start();
  const s = `"${env.db.schema}"`;
  try {
    await env.db.pool.query(`ALTER TABLE ${s}.dead_letters RENAME TO dead_letters_away`);
    const id = randomUUID();
    const started = Date.now();
    await publishDeadLetters(env, [deadLetterCopy({ messageId: id }, { seal: env.seal })]);
    await vi.waitFor(() => expect(sink.stats.failures).toBeGreaterThanOrEqual(3), WAIT);
    // 3 tries take at least 0.5 + 1 s of backoff: not a hot loop; and the delivery was never given back.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    expect(await queueDepth(env, env.topology.queue)).toBe(0);
    await env.db.pool.query(`ALTER TABLE ${s}.dead_letters_away RENAME TO dead_letters`);
    await vi.waitFor(async () => expect(await store.show(id)).toBeDefined(), { timeout: 15_000, interval: 100 });
    expect((await store.show(id))?.changes).toEqual([]);
  } finally {
    await env.db.pool.query(`ALTER TABLE IF EXISTS ${s}.dead_letters_away RENAME TO dead_letters`);
    await sink.stop();
  }
});
