// Versioned contracts end to end (issue 14, must show 3), through the outbox, the relay, RabbitMQ
// and the inbox: a v1 and a v2 producer feed one v2 consumer, which hands its handler the v2
// shape for both; a v1 consumer that receives v2 messages dead-letters them as `unknown-version`
// and keeps handling v1; once upgraded, a replay of those dead letters is handled as v2. Hostile
// version headers and a throwing upcaster end as dead letters that say why.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { DEAD_LETTER_REASON, defineMessage } from '@mailroom/core';
import { decodeDelivery, encodeDeadLetterCopy, type WireMessage } from '@mailroom/core/internal';
import { createDeadLetterSink, createDeadLetterStore, type DeadLetterSink } from '@mailroom/dlq';
import { handler, type HandlerFunction } from '@mailroom/inbox';
import { createRelay, type Relay } from '@mailroom/outbox';
import { testUrls } from '../../../test/helpers.js';
import { fitCopy } from '../src/copy-fitting.js';
import { commitEvents } from '../../outbox/test/commit-events.js';
import { WAIT, consumerFor, deadLetterTopology, deadLetters, publish, setupEnv, type Env } from './support.js';

let env: Env;
let relay: Relay;
let sink: DeadLetterSink;

// The contract as two services see it: one still on version 1, one upgraded to version 2.
const contracts = (exchange: string) => {
  const V1 = defineMessage('user.created', z.object({ id: z.string(), name: z.string() }), { exchange });
  const V2 = V1.version(2, z.object({ id: z.string(), firstName: z.string(), lastName: z.string() }), (v1) => {
    if (v1.name === 'upcast-throws') throw new Error('no way to split this name');
    const [firstName = '', ...rest] = v1.name.split(' ');
    return { id: v1.id, firstName, lastName: rest.join(' ') };
  });
  return { V1, V2 };
};

beforeAll(async () => {
  env = await setupEnv();
  relay = createRelay({ database: env.db.pool, amqp: testUrls().amqpUrl, schema: env.db.schema, pollIntervalMs: 100 });
  await relay.start();
  // The consumers' dead letters reach the store through a sink of their own.
  sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: deadLetterTopology(env) });
  await sink.start();
});
afterAll(async () => {
  await sink.stop();
  await relay.stop();
  await env.cleanup();
});

interface Seen {
  id: string;
  version: number;
  header: string | undefined;
  payload: unknown;
}

/** A handler that records what it saw, in the handler transaction (an effect row) and in `seen`. */
function recorder(seen: Seen[]): HandlerFunction<unknown> {
  return async ({ db, message, payload }) => {
    await db.query(`INSERT INTO "${env.db.schema}".effects (message_id, note) VALUES ($1, $2)`, [message.messageId, JSON.stringify(payload)]);
    seen.push({ id: message.messageId, version: message.version, header: message.headers['x-mailroom-version'], payload });
  };
}

const noop: HandlerFunction<{ orderId: string; total: number }> = async () => undefined;

describe('versioned contracts (must show 3)', () => {
  it('a v1 producer and a v2 producer feed one v2 consumer: its handler sees the v2 shape for both', async () => {
    const { V1, V2 } = contracts(env.exchange);
    for (const maxBatchSize of [1, 32]) {
      const seen: Seen[] = [];
      const consumer = consumerFor(env, noop, { name: env.broker.name(`v2-${maxBatchSize}`), handlers: [handler(V2, recorder(seen))], maxBatchSize });
      await consumer.start();
      const fromOld = V1.create({ id: 'u-1', name: 'Ada King Lovelace' }, { key: 'u-1' });
      const fromNew = V2.create({ id: 'u-2', firstName: 'Grace', lastName: 'Hopper' }, { key: 'u-2' });
      expect(fromOld.version).toBeUndefined();
      expect(fromNew.version).toBe(2);
      await commitEvents(env.db.pool, env.db.schema, [fromOld, fromNew]);
      await vi.waitFor(() => expect(seen).toHaveLength(2), WAIT);
      const byId = new Map(seen.map((s) => [s.id, s]));
      // The old producer's message travels without a version header (version 1) and is upcast.
      expect(byId.get(fromOld.messageId)).toEqual({ id: fromOld.messageId, version: 1, header: undefined, payload: { id: 'u-1', firstName: 'Ada', lastName: 'King Lovelace' } });
      expect(byId.get(fromNew.messageId)).toEqual({ id: fromNew.messageId, version: 2, header: '2', payload: { id: 'u-2', firstName: 'Grace', lastName: 'Hopper' } });
      await consumer.stop();
    }
    expect(await deadLetters(env)).toEqual([]);
  });

  it('a v1 consumer dead-letters v2 messages as unknown-version and keeps handling v1; after the upgrade the replay is handled as v2', async () => {
    const { V1, V2 } = contracts(env.exchange);
    const name = env.broker.name('lagging');
    const seenByOld: Seen[] = [];
    const old = consumerFor(env, noop, { name, handlers: [handler(V1, recorder(seenByOld))] });
    await old.start();
    const newer = V2.create({ id: 'u-3', firstName: 'Katherine', lastName: 'Johnson' }, { key: 'u-3' });
    const older = V1.create({ id: 'u-4', name: 'Dorothy Vaughan' }, { key: 'u-4' });
    await commitEvents(env.db.pool, env.db.schema, [newer, older]);
    await vi.waitFor(async () => expect((await deadLetters(env)).filter((d) => d.source === old.queue)).toHaveLength(1), WAIT);
    await vi.waitFor(() => expect(seenByOld).toHaveLength(1), WAIT);
    // The old consumer keeps working on what it knows, in its own (v1) shape.
    expect(seenByOld[0]).toMatchObject({ id: older.messageId, version: 1, payload: { id: 'u-4', name: 'Dorothy Vaughan' } });
    const [dead] = (await deadLetters(env)).filter((d) => d.source === old.queue);
    expect(dead).toMatchObject({
      message_id: newer.messageId,
      reason: DEAD_LETTER_REASON.unknownVersion,
      error: `Message type "user.created" version 2 is newer than consumer "${name}" knows (1); replay it once the consumer knows version 2.`,
      attempts: 1,
      payload: { id: 'u-3', firstName: 'Katherine', lastName: 'Johnson' },
    });
    expect(old.stats).toMatchObject({ handled: 1, deadLettered: 1, failures: 0 });
    await old.stop();

    // The consumer is upgraded (same name, same queue, same inbox) and the dead letter replayed.
    const seenByNew: Seen[] = [];
    const upgraded = consumerFor(env, noop, { name, handlers: [handler(V2, recorder(seenByNew))] });
    await upgraded.start();
    const store = createDeadLetterStore({ db: env.db.pool, schema: env.db.schema });
    const shown = await store.show(newer.messageId);
    expect(shown?.replayTarget).toEqual({ replayable: true, exchange: env.exchange, routingKey: 'user.created' });
    const replayed = await store.replay({ ids: [newer.messageId] });
    expect(replayed).toMatchObject({ count: 1, messageIds: [newer.messageId], skipped: [] });
    await vi.waitFor(() => expect(seenByNew).toHaveLength(1), WAIT);
    expect(seenByNew[0]).toEqual({ id: newer.messageId, version: 2, header: '2', payload: { id: 'u-3', firstName: 'Katherine', lastName: 'Johnson' } });
    expect(upgraded.stats).toMatchObject({ handled: 1, deadLettered: 0 });
    await upgraded.stop();
  });

  it('hostile version headers and a throwing upcaster end as dead letters that say why; the consumer goes on', async () => {
    const { V2 } = contracts(env.exchange);
    const seen: Seen[] = [];
    const consumer = consumerFor(env, noop, { name: env.broker.name('hostile'), handlers: [handler(V2, recorder(seen))] });
    await consumer.start();
    const v2Body = { id: 'h', firstName: 'H', lastName: 'H' };
    const malformed: unknown[] = ['0', '-1', '+2', '02', '2.0', '1e3', ' 2', '', 'two', '2\u0000', '9'.repeat(300), '99999', 2.5, true];
    const sent = new Map<string, unknown>();
    for (const value of malformed) {
      sent.set(await publish(env, v2Body, { type: 'user.created', routingKey: 'user.created', headers: { 'x-mailroom-version': value } }), value);
    }
    // Well-formed but newer than anything the contract knows.
    const tooNew = await publish(env, v2Body, { type: 'user.created', routingKey: 'user.created', headers: { 'x-mailroom-version': '10000' } });
    // A v1 payload labelled v2: fails v2's schema, naming the version.
    const mislabelled = await publish(env, { id: 'm', name: 'Mis Labelled' }, { type: 'user.created', routingKey: 'user.created', headers: { 'x-mailroom-version': '2' } });
    // The upcaster throws: the step is named.
    const throws = await publish(env, { id: 't', name: 'upcast-throws' }, { type: 'user.created', routingKey: 'user.created' });
    // An AMQP integer header is read as the number it is; then a plain v1 message after all of that.
    const integer = await publish(env, v2Body, { type: 'user.created', routingKey: 'user.created', headers: { 'x-mailroom-version': 2 } });
    const fine = await publish(env, { id: 'f', name: 'Fine Message' }, { type: 'user.created', routingKey: 'user.created' });

    await vi.waitFor(() => expect(seen.map((s) => s.id).sort()).toEqual([integer, fine].sort()), WAIT);
    await vi.waitFor(async () => expect((await deadLetters(env)).filter((d) => d.source === consumer.queue)).toHaveLength(malformed.length + 3), WAIT);
    const dead = new Map((await deadLetters(env)).filter((d) => d.source === consumer.queue).map((d) => [d.message_id, d]));
    for (const [id, value] of sent) {
      const d = dead.get(id);
      expect(d?.reason, JSON.stringify(value)).toBe(DEAD_LETTER_REASON.invalidVersion);
      // The sink notes what it had to change to store it (the NUL in the header, say).
      expect(d?.error).toMatch(/^The x-mailroom-version header .* is not a contract version: a whole number from 1 to 10000 is expected\.( \[stored with changes: [^\]]+\])?$/);
      expect(d?.error.length).toBeLessThan(300);
    }
    expect(dead.get(tooNew)).toMatchObject({ reason: DEAD_LETTER_REASON.unknownVersion, error: expect.stringContaining('version 10000 is newer than consumer') as unknown });
    expect(dead.get(mislabelled)).toMatchObject({ reason: DEAD_LETTER_REASON.invalidPayload, error: expect.stringContaining('"user.created" at version 2: firstName') as unknown });
    expect(dead.get(throws)).toMatchObject({
      reason: DEAD_LETTER_REASON.invalidPayload,
      error: expect.stringContaining('Upcasting message type "user.created" from version 1 to 2 failed: Error: no way to split this name') as unknown,
    });
    // A malformed version can never be read by any consumer: the store will not replay it.
    const store = createDeadLetterStore({ db: env.db.pool, schema: env.db.schema });
    const [first] = sent.keys();
    expect((await store.show(first as string))?.replayTarget).toEqual({ replayable: false, why: expect.stringContaining('not a contract version') as unknown });
    expect(consumer.stats).toMatchObject({ handled: 2, deadLettered: malformed.length + 3, requeued: 0, retries: 0 });
    expect(seen.find((s) => s.id === integer)).toMatchObject({ version: 2, payload: v2Body });
    await consumer.stop();
  });
});

describe('the version header in a dead-letter copy', () => {
  it('is never shed when the copy drops headers to fit: a replay needs it', () => {
    const message: WireMessage = {
      content: Buffer.from('{}'),
      fields: { exchange: 'users', routingKey: 'user.created' },
      properties: {
        messageId: '00000000-0000-4000-8000-000000000001',
        type: 'user.created',
        headers: { 'x-mailroom-version': '2', 'x-mailroom-key': 'k'.repeat(200), 'x-mailroom-occurred-at': new Date().toISOString(), big: 'b'.repeat(2000) },
      },
    };
    const verdict = { reason: DEAD_LETTER_REASON.nonRetryable, error: 'e', source: 'q' };
    // A budget so small that every header the delivery came with would go.
    const fitted = fitCopy(message, (m) => encodeDeadLetterCopy(m, decodeDelivery(m, 'q'), verdict), 100);
    expect(fitted.dropped.map((d) => d.name).sort()).toEqual(['big', 'x-mailroom-key', 'x-mailroom-occurred-at']);
    expect(fitted.properties.headers['x-mailroom-version']).toBe('2');
  });
});
