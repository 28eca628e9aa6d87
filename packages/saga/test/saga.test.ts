// A saga's steps run by a real consumer against the real PostgreSQL and RabbitMQ, with a relay
// publishing what the steps send and schedule: the decided behaviour of each awkward case.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { MetricsRegistry, defineMessage } from '@mailroom/core';
import type { Consumer } from '@mailroom/inbox';
import { createRelay, type Relay } from '@mailroom/outbox';
import { cleanupSagas, defineSaga, listSagas, readSaga, sagaHandlers, sagaMetrics } from '@mailroom/saga';
import { testUrls, type Collected } from '../../../test/helpers.js';
import { WAIT, consumerFor, historyRows, instanceRow, publish, setupEnv, type Env, type Recorded } from './support.js';

let env: Env;
let relay: Relay;
let consumer: Consumer;
let recorded: Recorded;
let effects: Collected;
const registry = new MetricsRegistry();

const contracts = (exchange: string) => ({
  Started: defineMessage('t.started', z.object({ id: z.string() }), { exchange }),
  Note: defineMessage('t.note', z.object({ id: z.string(), note: z.string() }), { exchange }),
  Timeout: defineMessage('t.timeout', z.object({ id: z.string() }), { exchange }),
  Late: defineMessage('t.late', z.object({ id: z.string() }), { exchange }),
  Hostile: defineMessage('t.hostile', z.object({ id: z.string(), how: z.string() }), { exchange }),
  Effect: defineMessage('t.effect', z.object({ id: z.string(), note: z.string() }), { exchange }),
});
let C: ReturnType<typeof contracts>;

const State = z.object({
  notes: z.array(z.string()),
  timeoutId: z.string().nullable(),
  timedOut: z.number().int(),
  late: z.number().int(),
  when: z.date().optional(),
});
type State = z.output<typeof State>;

const SAGA = 't-saga';

function testSaga(c: ReturnType<typeof contracts>) {
  const add = (state: State, note: string): State => ({ ...state, notes: [...state.notes, note] });
  return defineSaga({
    name: SAGA,
    state: State,
    steps: (step) => [
      step(c.Started, {
        starts: true,
        correlate: (p) => p.id,
        async handle({ state }) {
          return state ?? { notes: ['started'], timeoutId: null, timedOut: 0, late: 0 };
        },
      }),
      step(c.Note, {
        correlate: (p) => p.id,
        async handle({ state, payload, instance, send, schedule, cancel, complete, fail }) {
          const { note } = payload;
          switch (note) {
            case 'throw':
              await send(c.Effect.create({ id: instance.id, note: 'from a step that throws' }));
              throw new Error('the step failed on purpose');
            case 'nul':
              return add(state, 'a\u0000b');
            case 'bad-state':
              return { ...state, notes: 42 } as never;
            case 'big':
              return add(state, 'x'.repeat(5000));
            case 'date':
              return { ...state, when: new Date() };
            case 'complete':
              complete();
              return add(state, 'complete');
            case 'fail':
              fail();
              return add(state, 'fail');
            case 'send':
              await send(c.Effect.create({ id: instance.id, note: 'sent' }));
              return add(state, 'send');
            case 'schedule':
            case 'reschedule': {
              // `reschedule` moves on without cancelling: the earlier timeout still fires and must change nothing.
              const timeoutId = await schedule(c.Timeout.create({ id: instance.id }), { delay: 300 });
              return { ...add(state, note), timeoutId };
            }
            case 'cancel': {
              const removed = state.timeoutId === null ? false : await cancel(state.timeoutId);
              return { ...add(state, `cancelled:${removed}`), timeoutId: null };
            }
            case 'schedule-unknown':
            case 'schedule-other': {
              const message = note === 'schedule-unknown' ? c.Effect.create({ id: instance.id, note: 'x' }) : c.Timeout.create({ id: `${instance.id}-other` });
              try {
                await schedule(message, { delay: 10 });
                return add(state, 'scheduled?!');
              } catch (error) {
                return add(state, (error as Error).message);
              }
            }
            default:
              return add(state, note);
          }
        },
      }),
      step(c.Timeout, {
        correlate: (p) => p.id,
        async handle({ state, message }) {
          // The idiom: only the timeout the state waits for acts.
          if (state.timeoutId !== message.messageId) return state;
          return { ...add(state, 'timed-out'), timeoutId: null, timedOut: state.timedOut + 1 };
        },
      }),
      step(c.Late, { correlate: (p) => p.id, afterEnd: 'handle', handle: async ({ state }) => ({ ...state, late: state.late + 1 }) }),
      step(c.Hostile, {
        starts: true,
        correlate: (p) => {
          switch (p.how) {
            case 'long':
              return 'x'.repeat(201);
            case 'nul':
              return 'a\u0000b';
            case 'newline':
              return 'a\nb';
            case 'surrogate':
              return 'a\uD800b';
            case 'number':
              return 42 as never;
            case 'empty':
              return '';
            case 'throw':
              throw new Error('cannot correlate this one');
            default:
              return p.id;
          }
        },
        handle: async ({ state }) => state ?? { notes: ['hostile'], timeoutId: null, timedOut: 0, late: 0 },
      }),
    ],
  });
}

async function waitForHistory(id: string, count: number): Promise<Awaited<ReturnType<typeof historyRows>>> {
  return vi.waitFor(async () => {
    const rows = await historyRows(env, SAGA, id);
    expect(rows.length).toBeGreaterThanOrEqual(count);
    return rows;
  }, WAIT);
}

async function start(id: string): Promise<void> {
  await publish(env, C.Started, { id });
  await waitForHistory(id, 1);
}

const deadLetterOf = (messageId: string) => recorded.deadLettered.find((d) => d.messageId === messageId);

beforeAll(async () => {
  env = await setupEnv();
  C = contracts(env.exchange);
  effects = env.broker.collect(await env.broker.queueFor(env.exchange, 't.effect'));
  relay = createRelay({ database: env.db.pool, amqp: testUrls().amqpUrl, schema: env.db.schema, pollIntervalMs: 100 });
  await relay.start();
  ({ consumer, recorded } = consumerFor(env, { handlers: sagaHandlers(testSaga(C), { schema: env.db.schema, maxStateBytes: 4096, metrics: registry }) }));
  await consumer.start();
});

afterAll(async () => {
  await effects?.stop();
  await relay?.stop();
  await env?.cleanup();
});

describe('steps', () => {
  it('a start creates the instance; each step locks it, stores the new state, bumps the version and writes history', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    const noteIds = [await publish(env, C.Note, { id, note: 'one' })];
    await waitForHistory(id, 2);
    noteIds.push(await publish(env, C.Note, { id, note: 'send' }));
    const rows = await waitForHistory(id, 3);
    expect(rows.map((r) => [r.message_type, r.outcome, r.from_version, r.to_version])).toEqual([
      ['t.started', 'applied', '0', '1'],
      ['t.note', 'applied', '1', '2'],
      ['t.note', 'applied', '2', '3'],
    ]);
    expect(rows[0]?.from_state).toBeNull();
    expect(rows[2]?.from_state).toEqual(rows[1]?.to_state);
    const row = await instanceRow(env, SAGA, id);
    expect(row).toMatchObject({ status: 'running', version: '3', completed_at: null, state: { notes: ['started', 'one', 'send'] } });
    // What the step sent left through the outbox and the relay.
    await vi.waitFor(() => expect(effects.messages.map((m) => JSON.parse(m.content.toString()) as unknown)).toContainEqual({ id, note: 'sent' }), WAIT);

    const record = await readSaga(env.db.pool, SAGA, id, { schema: env.db.schema });
    expect(record).toMatchObject({ saga: SAGA, id, status: 'running', version: 3, completedAt: null, state: { notes: ['started', 'one', 'send'] } });
    expect(record?.history.map((h) => h.messageId).slice(1)).toEqual(noteIds);
    expect(record?.history[1]).toMatchObject({ type: 't.note', outcome: 'applied', from: { status: 'running', version: 1 }, to: { status: 'running', version: 2 } });
    expect(await readSaga(env.db.pool, SAGA, 'nope', { schema: env.db.schema })).toBeUndefined();
    expect(await readSaga(env.db.pool, SAGA, 'a\u0000b', { schema: env.db.schema })).toBeUndefined();
  });

  it('a second start for a running instance runs its step with the state (no new instance)', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    await publish(env, C.Started, { id });
    const rows = await waitForHistory(id, 2);
    expect(rows.map((r) => r.to_version)).toEqual(['1', '2']);
    expect((await instanceRow(env, SAGA, id))?.state).toMatchObject({ notes: ['started'] });
  });
});

describe('the awkward cases', () => {
  it('a message for an instance not started yet is retried through the retry policy and applies once the start arrives', async () => {
    const id = `o-${randomUUID()}`;
    const early = await publish(env, C.Note, { id, note: 'early' });
    await vi.waitFor(() => expect(recorded.retrying.some((r) => r.messageId === early)).toBe(true), WAIT);
    expect(recorded.retrying.find((r) => r.messageId === early)?.error).toContain('SagaNotStartedError');
    expect(await instanceRow(env, SAGA, id)).toBeUndefined();
    await publish(env, C.Started, { id });
    const rows = await waitForHistory(id, 2);
    expect(rows.map((r) => r.message_id)).toContain(early);
    expect((await instanceRow(env, SAGA, id))?.state).toMatchObject({ notes: ['started', 'early'] });
  });

  it('a message for an instance that never starts is dead-lettered after the retries (max-attempts); nothing is created', async () => {
    const id = `o-${randomUUID()}`;
    const orphan = await publish(env, C.Note, { id, note: 'orphan' });
    await vi.waitFor(() => expect(deadLetterOf(orphan)).toBeDefined(), WAIT);
    expect(deadLetterOf(orphan)).toMatchObject({ reason: 'max-attempts', attempt: 3 });
    expect(deadLetterOf(orphan)?.error).toContain(`Saga "${SAGA}" has no instance "${id}" for a "t.note" message`);
    expect(await instanceRow(env, SAGA, id)).toBeUndefined();
    expect(await historyRows(env, SAGA, id)).toEqual([]);
  });

  it('a message for a completed instance is recorded as ignored (handler not called); afterEnd: handle runs its handler, the status stays', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    await publish(env, C.Note, { id, note: 'complete' });
    await waitForHistory(id, 2);
    const done = await instanceRow(env, SAGA, id);
    expect(done).toMatchObject({ status: 'completed', version: '2' });
    expect(done?.completed_at).toBeInstanceOf(Date);
    const ignored = await publish(env, C.Note, { id, note: 'after the end' });
    const rows = await waitForHistory(id, 3);
    expect(rows[2]).toMatchObject({ message_id: ignored, outcome: 'ignored', from_version: '2', to_version: '2' });
    expect(await instanceRow(env, SAGA, id)).toEqual(done);
    await publish(env, C.Late, { id });
    await waitForHistory(id, 4);
    expect(await instanceRow(env, SAGA, id)).toMatchObject({ status: 'completed', version: '3', state: { late: 1 }, completed_at: done?.completed_at });
  });

  it('fail() ends the instance as failed', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    await publish(env, C.Note, { id, note: 'fail' });
    await waitForHistory(id, 2);
    expect(await instanceRow(env, SAGA, id)).toMatchObject({ status: 'failed', version: '2' });
  });

  it('a timeout that fires after the saga moved on sees the current state and changes nothing; the current one acts', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    await publish(env, C.Note, { id, note: 'schedule' });
    const [, scheduled] = await waitForHistory(id, 2);
    const first = (scheduled?.to_state as State).timeoutId;
    expect(first).toMatch(/^[0-9a-f-]{36}$/);
    await publish(env, C.Note, { id, note: 'reschedule' });
    const [, , rescheduled] = await waitForHistory(id, 3);
    const second = (rescheduled?.to_state as State).timeoutId;
    expect(second).not.toBe(first);
    // Both timeouts fire (300 ms after their step): the stale one leaves the state as it was.
    const rows = await waitForHistory(id, 5);
    const stale = rows.find((r) => r.message_id === first);
    expect(stale).toMatchObject({ message_type: 't.timeout', outcome: 'applied' });
    expect(stale?.to_state).toEqual(stale?.from_state);
    const current = rows.find((r) => r.message_id === second);
    expect(current?.to_state).toMatchObject({ timeoutId: null, timedOut: 1 });
    expect((await instanceRow(env, SAGA, id))?.state).toMatchObject({ timedOut: 1, timeoutId: null });
  });

  it('a cancelled timeout never arrives', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    await publish(env, C.Note, { id, note: 'schedule' });
    const [, scheduled] = await waitForHistory(id, 2);
    const timeoutId = (scheduled?.to_state as State).timeoutId;
    await publish(env, C.Note, { id, note: 'cancel' });
    const rows = await waitForHistory(id, 3);
    expect((rows[2]?.to_state as State).notes).toContain('cancelled:true');
    // Well past its due time (300 ms), then a marker step: the timeout is not in the history.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await publish(env, C.Note, { id, note: 'marker' });
    const after = await waitForHistory(id, 4);
    expect(after.map((r) => r.message_id)).not.toContain(timeoutId);
    expect(after.map((r) => r.message_type)).toEqual(['t.started', 't.note', 't.note', 't.note']);
  });

  it('a handler that throws: retried, then dead-lettered; the instance, its history and the outbox unchanged', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    const before = await instanceRow(env, SAGA, id);
    const failing = await publish(env, C.Note, { id, note: 'throw' });
    await vi.waitFor(() => expect(deadLetterOf(failing)).toBeDefined(), WAIT);
    expect(deadLetterOf(failing)).toMatchObject({ reason: 'max-attempts', attempt: 3 });
    expect(deadLetterOf(failing)?.error).toContain('the step failed on purpose');
    expect(recorded.retrying.filter((r) => r.messageId === failing)).toHaveLength(2);
    expect(await instanceRow(env, SAGA, id)).toEqual(before);
    expect(await historyRows(env, SAGA, id)).toHaveLength(1);
    const outbox = await env.db.pool.query(`SELECT 1 FROM "${env.db.schema}".outbox WHERE payload->>'id' = $1`, [id]);
    expect(outbox.rowCount).toBe(0);
    expect(effects.messages.map((m) => (JSON.parse(m.content.toString()) as { id: string }).id)).not.toContain(id);
  });

  it('a stored state the schema refuses (an upgrade): dead-lettered at once, naming the saga, the instance and the issues; instance unchanged', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    // What an older version of the saga stored.
    await env.db.pool.query(`UPDATE "${env.db.schema}".sagas SET state = '{"notes": "old shape", "timeoutId": null}' WHERE saga = $1 AND id = $2`, [SAGA, id]);
    const before = await instanceRow(env, SAGA, id);
    const next = await publish(env, C.Note, { id, note: 'after the upgrade' });
    await vi.waitFor(() => expect(deadLetterOf(next)).toBeDefined(), WAIT);
    const dl = deadLetterOf(next);
    expect(dl).toMatchObject({ reason: 'non-retryable', attempt: 1 });
    expect(dl?.error).toContain(`Saga "${SAGA}", "t.note" message: instance "${id}" (version 1) has a stored state the saga's schema refuses`);
    expect(dl?.error).toMatch(/notes: .*expected array/i);
    expect(dl?.error).toMatch(/timedOut: /);
    expect(await instanceRow(env, SAGA, id)).toEqual(before);
    expect(await historyRows(env, SAGA, id)).toHaveLength(1);
  });

  it.each([
    ['bad-state', 'the handler returned a state the saga\'s schema refuses: notes:'],
    ['big', 'bytes of JSON, more than maxStateBytes (4096)'],
    ['date', 'does not parse again once stored as JSON'],
  ])('a handler that returns an unusable state (%s) is dead-lettered at once; instance unchanged', async (note, text) => {
    const id = `o-${randomUUID()}`;
    await start(id);
    const before = await instanceRow(env, SAGA, id);
    const messageId = await publish(env, C.Note, { id, note });
    await vi.waitFor(() => expect(deadLetterOf(messageId)).toBeDefined(), WAIT);
    expect(deadLetterOf(messageId)).toMatchObject({ reason: 'non-retryable', attempt: 1 });
    expect(deadLetterOf(messageId)?.error).toContain(text);
    expect(await instanceRow(env, SAGA, id)).toEqual(before);
  });

  it('a NUL character in the new state: PostgreSQL refuses it, the message is dead-lettered as invalid-payload', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    const before = await instanceRow(env, SAGA, id);
    const messageId = await publish(env, C.Note, { id, note: 'nul' });
    await vi.waitFor(() => expect(deadLetterOf(messageId)).toBeDefined(), WAIT);
    expect(deadLetterOf(messageId)?.reason).toBe('invalid-payload');
    expect(await instanceRow(env, SAGA, id)).toEqual(before);
  });
});

describe('hostile input', () => {
  it.each([
    ['long', 'has 201 characters (at most 200)'],
    ['nul', 'has a control character'],
    ['newline', 'has a control character'],
    ['surrogate', 'lone surrogate'],
    ['number', 'must be a string (got number)'],
    ['empty', 'it is empty'],
    ['throw', 'correlate threw: Error: cannot correlate this one'],
  ])('a correlation that is unusable (%s) is dead-lettered at once, nothing stored', async (how, text) => {
    const id = `h-${randomUUID()}`;
    const messageId = await publish(env, C.Hostile, { id, how });
    await vi.waitFor(() => expect(deadLetterOf(messageId)).toBeDefined(), WAIT);
    expect(deadLetterOf(messageId)).toMatchObject({ reason: 'non-retryable', attempt: 1 });
    expect(deadLetterOf(messageId)?.error).toContain(`Saga "${SAGA}", "t.hostile" message:`);
    expect(deadLetterOf(messageId)?.error).toContain(text);
    // The hostile id itself never reaches an error message whole.
    expect(deadLetterOf(messageId)?.error.length).toBeLessThan(400);
    const count = await env.db.pool.query(`SELECT count(*)::int AS n FROM "${env.db.schema}".sagas WHERE state->'notes' ? 'hostile'`);
    expect(count.rows[0]).toEqual({ n: 0 });
  });

  it('a message of a type the saga has no step for is dead-lettered by the consumer as unknown-type', async () => {
    const messageId = await publish(env, C.Note, { id: 'x', note: 'x' }, { type: 't.unknown' });
    await vi.waitFor(() => expect(deadLetterOf(messageId)).toBeDefined(), WAIT);
    expect(deadLetterOf(messageId)?.reason).toBe('unknown-type');
  });

  it('schedule() refuses a type the saga has no step for, and a timeout that correlates to another instance', async () => {
    const id = `o-${randomUUID()}`;
    await start(id);
    await publish(env, C.Note, { id, note: 'schedule-unknown' });
    await publish(env, C.Note, { id, note: 'schedule-other' });
    const rows = await waitForHistory(id, 3);
    const notes = (rows[2]?.to_state as State).notes;
    expect(notes).toContain(`Saga "${SAGA}": schedule() sends a message to this saga, and it has no step for "t.effect" (steps: t.started, t.note, t.timeout, t.late, t.hostile); use send() for other services.`);
    expect(notes).toContain(`Saga "${SAGA}": the scheduled "t.timeout" message correlates to "${id}-other", not to this instance "${id}".`);
    const scheduled = await env.db.pool.query(`SELECT 1 FROM "${env.db.schema}".outbox_scheduled WHERE payload->>'id' LIKE $1`, [`${id}%`]);
    expect(scheduled.rowCount).toBe(0);
  });
});

describe('the same message through two consumers', () => {
  it('applies once: the second consumer finds it in the history and counts a duplicate', async () => {
    const second = consumerFor(env, { handlers: sagaHandlers(testSaga(C), { schema: env.db.schema, metrics: registry }) });
    await second.consumer.start();
    try {
      const id = `o-${randomUUID()}`;
      // Both consumers' queues are bound to these types: each message reaches both.
      const started = await publish(env, C.Started, { id });
      const noted = await publish(env, C.Note, { id, note: 'twice?' });
      await vi.waitFor(() => {
        expect(second.recorded.handled).toEqual(expect.arrayContaining([started, noted]));
        expect(recorded.handled).toEqual(expect.arrayContaining([started, noted]));
      }, WAIT);
      const rows = await historyRows(env, SAGA, id);
      expect(rows.map((r) => r.message_id).sort()).toEqual([started, noted].sort());
      expect(await instanceRow(env, SAGA, id)).toMatchObject({ version: '2', state: { notes: ['started', 'twice?'] } });
      expect(await registry.render()).toMatch(/mailroom_saga_steps_total\{saga="t-saga",type="t.note",outcome="duplicate"\} [1-9]/);
    } finally {
      await second.consumer.stop();
    }
  });
});

describe('store, metrics and retention', () => {
  it('listSagas filters by name, status and time unchanged; the gauge counts instances by status', async () => {
    const id = `l-${randomUUID()}`;
    await start(id);
    const all = await listSagas(env.db.pool, { schema: env.db.schema, name: SAGA, limit: 10_000 });
    expect(all.map((s) => s.id)).toContain(id);
    expect(all[0]?.updatedAt.getTime()).toBeGreaterThanOrEqual(all.at(-1)?.updatedAt.getTime() ?? 0);
    const completed = await listSagas(env.db.pool, { schema: env.db.schema, status: 'completed', limit: 10_000 });
    expect(completed.length).toBeGreaterThan(0);
    expect(completed.every((s) => s.status === 'completed' && s.completedAt instanceof Date)).toBe(true);
    expect(await listSagas(env.db.pool, { schema: env.db.schema, name: 'other-saga' })).toEqual([]);
    // Stuck: running and unchanged for an hour (moved back in time here).
    await env.db.pool.query(`UPDATE "${env.db.schema}".sagas SET updated_at = now() - interval '2 hours' WHERE saga = $1 AND id = $2`, [SAGA, id]);
    const stuck = await listSagas(env.db.pool, { schema: env.db.schema, stuckForMs: 3_600_000 });
    expect(stuck.map((s) => s.id)).toEqual([id]);
    await expect(listSagas(env.db.pool, { schema: env.db.schema, status: 'lost' as never })).rejects.toThrow('status must be one of running, completed, failed');
    await expect(listSagas(env.db.pool, { schema: env.db.schema, limit: 0 })).rejects.toThrow('limit must be an integer from 1 to 10000');
    await expect(listSagas(env.db.pool, { schema: 'Bad Schema' })).rejects.toThrow('Invalid schema name');

    const gauges = new MetricsRegistry();
    sagaMetrics(gauges, { db: env.db.pool, schema: env.db.schema });
    const counts = await env.db.pool.query<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM "${env.db.schema}".sagas WHERE saga = $1 GROUP BY status`, [SAGA]);
    const text = await gauges.render();
    for (const { status, n } of counts.rows) expect(text).toContain(`mailroom_saga_instances{saga="${SAGA}",status="${status}"} ${n}`);
  });

  it('cleanupSagas removes ended instances older than the retention with their history, and nothing else', async () => {
    const [old, recent, running] = [`c-${randomUUID()}`, `c-${randomUUID()}`, `c-${randomUUID()}`];
    for (const id of [old, recent, running]) await start(id);
    for (const id of [old, recent]) await publish(env, C.Note, { id, note: 'complete' });
    await waitForHistory(old, 2);
    await waitForHistory(recent, 2);
    await env.db.pool.query(`UPDATE "${env.db.schema}".sagas SET completed_at = now() - interval '31 days' WHERE saga = $1 AND id = $2`, [SAGA, old]);
    await env.db.pool.query(`UPDATE "${env.db.schema}".sagas SET updated_at = now() - interval '60 days' WHERE saga = $1 AND id = $2`, [SAGA, running]);
    const removed = await cleanupSagas(env.db.pool, { schema: env.db.schema, batchSize: 1 });
    expect(removed).toBe(1);
    expect(await instanceRow(env, SAGA, old)).toBeUndefined();
    expect(await historyRows(env, SAGA, old)).toEqual([]);
    expect(await instanceRow(env, SAGA, recent)).toMatchObject({ status: 'completed' });
    expect(await historyRows(env, SAGA, recent)).toHaveLength(2);
    expect(await instanceRow(env, SAGA, running)).toMatchObject({ status: 'running' });
    await expect(cleanupSagas(env.db.pool, { schema: env.db.schema, olderThanMs: -1 })).rejects.toThrow('olderThanMs must be a number');
  });
});

describe('definition', () => {
  const M = defineMessage('d.one', z.object({ id: z.string() }));
  const N = defineMessage('d.two', z.object({ id: z.string() }));
  const S = z.object({ n: z.number() });

  it('refuses a bad name, two steps for one type, no starting step, steps that are not a function', () => {
    const ok = { correlate: (p: { id: string }) => p.id, handle: async () => ({ n: 1 }) };
    expect(() => defineSaga({ name: 'Bad Name', state: S, steps: (step) => [step(M, { ...ok, starts: true })] })).toThrow('Invalid saga name "Bad Name"');
    expect(() => defineSaga({ name: 'x'.repeat(101), state: S, steps: (step) => [step(M, { ...ok, starts: true })] })).toThrow('Invalid saga name');
    expect(() => defineSaga({ name: 'd', state: S, steps: (step) => [step(M, { ...ok, starts: true }), step(M, ok)] })).toThrow('two steps for message type "d.one"');
    expect(() => defineSaga({ name: 'd', state: S, steps: (step) => [step(M, ok), step(N, ok)] })).toThrow('no step starts an instance');
    expect(() => defineSaga({ name: 'd', state: S, steps: () => [] })).toThrow('give at least one step');
    expect(() => defineSaga({ name: 'd', state: S, steps: [] as never })).toThrow('steps must be a function');
    expect(() => defineSaga({ name: 'd', state: {}, steps: () => [] } as never)).toThrow('state must be a zod schema');
    expect(() => defineSaga({ name: 'd', state: S, steps: (step) => [step(M, { ...ok, starts: true, afterEnd: 'maybe' as never })] })).toThrow('afterEnd must be "ignore" or "handle"');
    const saga = defineSaga({ name: 'd', state: S, steps: (step) => [step(M, { ...ok, starts: true }), step(N, ok)] });
    expect([...saga.steps.keys()]).toEqual(['d.one', 'd.two']);
    expect(() => sagaHandlers(saga, { schema: 'Bad' })).toThrow('Invalid schema name');
    expect(() => sagaHandlers(saga, { maxStateBytes: 0 })).toThrow('maxStateBytes must be an integer');
    expect(() => sagaHandlers(saga, { retries: 3 } as never)).toThrow('unknown key "retries"');
    expect(sagaHandlers(saga).map((h) => h.contract.type)).toEqual(['d.one', 'd.two']);
  });
});
