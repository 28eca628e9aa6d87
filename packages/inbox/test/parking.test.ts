// Sequenced dead letters (issue 12, must show 2): with ordering on, when a keyed message becomes a
// dead letter its key is parked behind it. Later messages of the key are stored as dead letters
// (reason `parked`, listed as parked behind the head) instead of being handled out of order;
// every other key completes. Replaying the head through the dlq store API (as an operator would)
// releases them after it, in order, through the outbox and the relay; discarding it releases them
// without it. A message of the key already on its way during a release never overtakes it.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createDeadLetterSink, createDeadLetterStore, type DeadLetter, type DeadLetterSink, type DeadLetterStore } from '@mailroom/dlq';
import { NonRetryableError, createConsumer, handler, type Consumer, type ConsumerOptions } from '@mailroom/inbox';
import { createRelay, type Relay } from '@mailroom/outbox';
import { testUrls } from '../../../test/helpers.js';
import { WAIT, deadLetterTopology, publish, setupEnv, type Env } from './support.js';

const Step = (exchange: string) => defineMessage('key.step', z.object({ key: z.string(), seq: z.number().int() }), { exchange });
type StepPayload = { key: string; seq: number };

let env: Env;
let sink: DeadLetterSink;
let store: DeadLetterStore;
const relays: Relay[] = [];
const partitionQueues = new Set<string>();
beforeAll(async () => {
  env = await setupEnv();
  sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: deadLetterTopology(env) });
  await sink.start();
  store = createDeadLetterStore({ db: env.db.pool, schema: env.db.schema, actor: 'parking-test' });
});
afterEach(async () => {
  // Each test starts the relay when its story needs it: none may be left publishing into the next.
  for (const relay of relays.splice(0)) await relay.stop();
});
afterAll(async () => {
  const ch = await env.broker.connection.createChannel();
  for (const q of partitionQueues) await ch.deleteQueue(q).catch(() => undefined);
  await ch.close().catch(() => undefined);
  await sink.stop();
  await env.cleanup();
});

/** Starts an ordered relay for the replays (the outbox keeps each key's order, the relay publishes it so). */
async function startRelay(): Promise<Relay> {
  const relay = createRelay({ database: env.db.pool, amqp: testUrls().amqpUrl, schema: env.db.schema, ordering: true, partitions: 4, leaseHeartbeatMs: 200, pollIntervalMs: 100 });
  relays.push(relay);
  await relay.start();
  return relay;
}

interface Run {
  consumer: Consumer;
  exchange: string;
  /** (key, seq) of each handler that ran to its commit, in order. */
  handled: Array<{ key: string; seq: number }>;
  /** Message ids that went to the dead letters, by reason. */
  dead: Array<{ messageId: string; reason: string }>;
}

/** An ordered consumer whose handler calls `fail` first: a message it throws for is retried in place, then dead-lettered. */
function run(label: string, fail: (p: StepPayload) => Error | undefined, overrides: Partial<ConsumerOptions> = {}): Run {
  const exchange = env.broker.name(`${label}-events`);
  const handled: Run['handled'] = [];
  const consumer = createConsumer({
    name: env.broker.name(label),
    db: env.db.pool,
    amqp: testUrls().amqpUrl,
    schema: env.db.schema,
    ordering: true,
    prefetch: 30,
    retry: { initialDelayMs: 50, multiplier: 1, maxAttempts: 3 },
    deadLetters: deadLetterTopology(env),
    stopTimeoutMs: 5000,
    handlers: [
      handler(Step(exchange), async ({ payload }: { payload: StepPayload }) => {
        const error = fail(payload);
        if (error) throw error;
        // The commit cannot fail here (nothing is written but the inbox row): this is the commit order.
        handled.push({ key: payload.key, seq: payload.seq });
      }),
    ],
    ...overrides,
  });
  env.consumers.push(consumer);
  const dead: Run['dead'] = [];
  consumer.on('deadLettered', (info) => dead.push({ messageId: info.messageId, reason: info.reason }));
  return { consumer, exchange, handled, dead };
}

/** Publishes seq `from`..`to-1` of each key, interleaved, confirmed one at a time (so in order); returns the ids by key and seq. */
async function steps(r: Run, keys: string[], from: number, to: number): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for (let seq = from; seq < to; seq++) {
    for (const key of keys) {
      ids.set(`${key}/${seq}`, await publish(env, { key, seq }, { exchange: r.exchange, routingKey: 'key.step', type: 'key.step', key }));
    }
  }
  return ids;
}

const seqsOf = (r: Run, key: string): number[] => r.handled.filter((h) => h.key === key).map((h) => h.seq);
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
const seqOfDead = (dl: DeadLetter): number => {
  // A NUL in the payload is kept as the raw body (jsonb cannot hold it).
  if (dl.payload === null && dl.body !== null) return (JSON.parse(dl.body.toString('utf8')) as StepPayload).seq;
  return (dl.payload as StepPayload).seq;
};

async function parkRows(source: string): Promise<number> {
  const result = await env.db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${env.db.schema}".parked_keys WHERE source = $1`, [source]);
  return Number(result.rows[0]?.n);
}

describe('sequenced dead letters: parking behind a failed head (ordering on)', () => {
  it('must show 2: a key whose third message always fails is parked behind it, every other key completes; a replay after the fix releases the rest in order', async () => {
    let broken = true;
    const r = run('park-replay', (p) => (broken && p.key === 'a' && p.seq === 2 ? new Error('the third message of a fails') : undefined));
    await r.consumer.start();
    const ids = await steps(r, ['a', 'b', 'c', 'd', 'e'], 0, 10);
    const headId = ids.get('a/2') as string;

    // Every other key completes, in order; key a stops before its third message.
    await vi.waitFor(() => expect(r.handled).toHaveLength(42), WAIT);
    for (const key of ['b', 'c', 'd', 'e']) expect(seqsOf(r, key)).toEqual(range(0, 10));
    expect(seqsOf(r, 'a')).toEqual([0, 1]);
    // The head and the 7 messages behind it are stored; the parked ones say which head they wait behind.
    await vi.waitFor(async () => expect(await store.count({ source: r.consumer.queue })).toBe(8), WAIT);
    const head = await store.show(headId);
    expect(head).toMatchObject({ reason: 'max-attempts', attempts: 3 });
    expect(head?.parkedBehind).toBeUndefined();
    const parked = await store.parked(headId);
    expect(parked.map(seqOfDead)).toEqual(range(3, 10));
    for (const dl of parked) expect(dl).toMatchObject({ reason: 'parked', key: 'a', parkedBehind: headId });
    const listed = await store.list({ source: r.consumer.queue });
    expect(listed.filter((dl) => dl.parkedBehind === headId)).toHaveLength(7);
    expect(listed.find((dl) => dl.messageId === ids.get('a/5'))?.error).toContain(`Parked behind ${headId}`);
    // A parked message is never replayed on its own: it would overtake its head.
    const alone = await store.replay({ ids: [ids.get('a/5') as string] });
    expect(alone.count).toBe(0);
    expect(alone.skipped[0]?.why).toContain(`parked behind ${headId}`);
    // Nothing of key a was handled meanwhile (still two), and more of it waits too.
    expect(seqsOf(r, 'a')).toEqual([0, 1]);

    // The fix, then a replay of the head as an operator would: the head goes first, the parked ones after it.
    broken = false;
    const replay = await store.replay({ ids: [headId] });
    expect(replay).toMatchObject({ count: 1, messageIds: [headId] });
    expect(replay.released).toEqual(range(3, 10).map((seq) => ids.get(`a/${seq}`)));
    await startRelay();
    await vi.waitFor(() => expect(seqsOf(r, 'a')).toEqual(range(0, 10)), WAIT);
    // The key is complete and in order, the park lifted; the next message of the key flows at once.
    await vi.waitFor(async () => expect(await parkRows(r.consumer.queue)).toBe(0), WAIT);
    await steps(r, ['a'], 10, 11);
    await vi.waitFor(() => expect(seqsOf(r, 'a')).toEqual(range(0, 11)), WAIT);
    expect(r.handled).toHaveLength(51);
    expect((await store.list({ source: r.consumer.queue, pendingOnly: true })).length).toBe(0);
    await r.consumer.stop();
  });

  it('a discard of the head releases the messages behind it in order (without it)', async () => {
    const r = run('park-discard', (p) => (p.key === 'x' && p.seq === 1 ? new NonRetryableError('x/1 is refused') : undefined));
    await r.consumer.start();
    await startRelay();
    const ids = await steps(r, ['x', 'y'], 0, 6);
    const headId = ids.get('x/1') as string;
    await vi.waitFor(async () => expect(await store.count({ source: r.consumer.queue })).toBe(5), WAIT);
    expect(seqsOf(r, 'y')).toEqual(range(0, 6));
    expect(seqsOf(r, 'x')).toEqual([0]);
    expect(await store.discard({ ids: [headId] })).toBe(1);
    await vi.waitFor(() => expect(seqsOf(r, 'x')).toEqual([0, 2, 3, 4, 5]), WAIT);
    await vi.waitFor(async () => expect(await parkRows(r.consumer.queue)).toBe(0), WAIT);
    // The release is in the audit, as a replay after the discard.
    const actions = await store.actions({ limit: 2 });
    expect(actions.map((a) => a.action)).toEqual(['replay', 'discard']);
    await r.consumer.stop();
  });

  it('a message of the key already on its way during a release does not overtake the released ones: it waits, and the next release sends it', async () => {
    let broken = true;
    const r = run('park-race', (p) => (broken && p.key === 'r' && p.seq === 2 ? new Error('r/2 fails') : undefined));
    await r.consumer.start();
    const ids = await steps(r, ['r'], 0, 5);
    const headId = ids.get('r/2') as string;
    await vi.waitFor(async () => expect(await store.count({ source: r.consumer.queue })).toBe(3), WAIT);
    broken = false;
    expect((await store.replay({ ids: [headId] })).released).toHaveLength(2);
    // The release sits in the outbox (no relay yet); r/5, published before the release reached the
    // consumer, comes first: it is parked, not handled before r/2, r/3 and r/4.
    const late = (await steps(r, ['r'], 5, 6)).get('r/5') as string;
    await vi.waitFor(() => expect(r.dead).toContainEqual({ messageId: late, reason: 'parked' }), WAIT);
    expect(seqsOf(r, 'r')).toEqual([0, 1]);
    await startRelay();
    await vi.waitFor(() => expect(seqsOf(r, 'r')).toEqual([0, 1, 2, 3, 4]), WAIT);
    // The park holds again (r/5 waits behind the head); a second replay of the head releases it.
    await vi.waitFor(async () => expect((await store.parked(headId)).find((dl) => dl.messageId === late)?.parkedBehind).toBe(headId), WAIT);
    expect(await parkRows(r.consumer.queue)).toBe(1);
    expect((await store.replay({ ids: [headId] })).released).toEqual([late]);
    await vi.waitFor(() => expect(seqsOf(r, 'r')).toEqual(range(0, 6)), WAIT);
    await vi.waitFor(async () => expect(await parkRows(r.consumer.queue)).toBe(0), WAIT);
    await r.consumer.stop();
  });

  it('hostile keys: a 10 KB key parks and releases in order; a key with NUL bytes parks, cannot be replayed (the sink changed it), and flows again once its dead letters are discarded', async () => {
    const long = `L${'k'.repeat(10_000)}`;
    const nul = 'n\u0000u\u0000l';
    let broken = true;
    const r = run('park-hostile', (p) => {
      if (p.seq !== 1) return undefined;
      if (p.key === nul) return new NonRetryableError('the NUL key is refused');
      return broken && p.key === long ? new Error('the long key fails') : undefined;
    });
    await r.consumer.start();
    await startRelay();
    const ids = await steps(r, [long, nul, 'plain'], 0, 4);
    // Two heads and 2 + 2 parked; the plain key completes.
    await vi.waitFor(async () => expect(await store.count({ source: r.consumer.queue })).toBe(6), WAIT);
    expect(seqsOf(r, 'plain')).toEqual(range(0, 4));
    expect(seqsOf(r, long)).toEqual([0]);
    expect(seqsOf(r, nul)).toEqual([0]);

    broken = false;
    const longHead = ids.get(`${long}/1`) as string;
    expect((await store.parked(longHead)).map(seqOfDead)).toEqual([2, 3]);
    expect((await store.replay({ ids: [longHead] })).released).toHaveLength(2);
    await vi.waitFor(() => expect(seqsOf(r, long)).toEqual(range(0, 4)), WAIT);

    const nulHead = ids.get(`${nul}/1`) as string;
    const nulParked = await store.parked(nulHead);
    expect(nulParked.map(seqOfDead)).toEqual([2, 3]);
    for (const dl of nulParked) expect(dl.parkedBehind).toBe(nulHead);
    const refused = await store.replay({ ids: [nulHead] });
    expect(refused.count).toBe(0);
    expect(refused.skipped[0]?.why).toContain('the sink changed it');
    // Its head discarded, what waits behind it cannot go either (changed too): the key stays parked.
    expect(await store.discard({ ids: [nulHead] })).toBe(1);
    await steps(r, [nul], 4, 5);
    await vi.waitFor(() => expect(r.dead.filter((d) => d.messageId === ids.get(`${nul}/4`) || d.reason === 'parked').length).toBeGreaterThanOrEqual(5), WAIT);
    expect(seqsOf(r, nul)).toEqual([0]);
    // Discarding what waited lifts the park: the key flows again.
    await vi.waitFor(async () => expect((await store.list({ source: r.consumer.queue })).filter((dl) => dl.parkedBehind === nulHead)).toHaveLength(3), WAIT);
    expect(await store.discard({ ids: (await store.list({ source: r.consumer.queue })).filter((dl) => dl.parkedBehind === nulHead).map((dl) => dl.id) })).toBe(3);
    expect(await parkRows(r.consumer.queue)).toBe(0);
    await steps(r, [nul], 5, 6);
    await vi.waitFor(() => expect(seqsOf(r, nul)).toEqual([0, 5]), WAIT);
    await r.consumer.stop();
  });

  it('partitioned: a process that starts (or takes the partition) later reads the parks, so the key stays parked across processes', async () => {
    const partitions = { count: 2, rebalanceMs: 200 };
    const fail = (p: StepPayload): Error | undefined => (p.key === 'p' && p.seq === 1 ? new NonRetryableError('p/1 is refused') : undefined);
    const first = run('park-part', fail, { partitions });
    for (const n of [0, 1]) partitionQueues.add(`${first.consumer.queue}.p00${n}`);
    await first.consumer.start();
    await vi.waitFor(() => expect(first.consumer.partitions).toEqual([0, 1]), WAIT);
    await steps(first, ['p', 'q'], 0, 4);
    await vi.waitFor(async () => expect(await store.count({ source: first.consumer.queue })).toBe(3), WAIT);
    expect(seqsOf(first, 'p')).toEqual([0]);
    await first.consumer.stop();

    // Another process of the consumer: it never saw the failure, the database tells it.
    const second = run('park-part', fail, { partitions });
    await second.consumer.start();
    await vi.waitFor(() => expect(second.consumer.partitions).toEqual([0, 1]), WAIT);
    const more = await steps(second, ['p', 'q'], 4, 6);
    await vi.waitFor(() => expect(seqsOf(second, 'q')).toEqual([4, 5]), WAIT);
    await vi.waitFor(() => expect(second.dead.map((d) => d.messageId)).toEqual([more.get('p/4'), more.get('p/5')]), WAIT);
    expect(seqsOf(second, 'p')).toEqual([]);
    const head = (await store.list({ source: first.consumer.queue, reason: 'non-retryable' }))[0]?.messageId as string;
    await vi.waitFor(async () => expect((await store.parked(head)).map(seqOfDead)).toEqual([2, 3, 4, 5]), WAIT);
    await second.consumer.stop();
  });
});
