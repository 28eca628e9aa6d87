// Issue 9, defect 11 (sink side): the sink had no size cap. Now a body over `maxBodyBytes`
// (default 1 MiB) and headers over `maxHeaderBytes` (default 64 KiB) are stored cut down, the
// change said so, once, and never replayed as if they were the message.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createDeadLetterSink, createDeadLetterStore, type DeadLetterStore } from '@mailroom/dlq';
import { testUrls } from '../../../test/helpers.js';
import { deadLetterCopy, publishDeadLetters, queueDepth, setupSinkEnv, type SinkEnv } from './sink-support.js';

let env: SinkEnv;
let store: DeadLetterStore;
beforeAll(async () => {
  env = await setupSinkEnv();
  store = createDeadLetterStore({ db: env.db.pool, schema: env.db.schema });
});
afterAll(async () => {
  await env.cleanup();
});

it('stores a body over the default 1 MiB cap truncated, says so, and refuses to replay it', async () => {
  const sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: env.topology });
  await sink.start();
  try {
    const id = randomUUID();
    const body = Buffer.from(JSON.stringify({ orderId: 'big', pad: 'x'.repeat(1_572_864) }));
    await publishDeadLetters(env, [deadLetterCopy({ messageId: id, body }, { seal: env.seal })]);
    await vi.waitFor(async () => expect(await store.show(id)).toBeDefined(), { timeout: 10_000, interval: 50 });
    await vi.waitFor(async () => expect(await queueDepth(env, env.topology.queue)).toBe(0), { timeout: 10_000, interval: 50 });
    const stored = await store.show(id);
    expect(stored?.body?.length).toBe(1_048_576);
    expect(stored?.body?.subarray(0, 20).toString()).toBe(body.subarray(0, 20).toString());
    expect(stored?.payload).toBeNull();
    expect(stored?.changes).toEqual([`body: ${body.length} bytes, over maxBodyBytes (1048576): the first 1048576 kept`]);
    expect(stored?.error).toContain(`stored with changes: body: ${body.length} bytes`);
    expect(stored?.replayTarget).toEqual({ replayable: false, why: expect.stringMatching(/the sink changed it to store it/) as unknown });
    expect(sink.stats).toMatchObject({ stored: 1, failures: 0 });
  } finally {
    await sink.stop();
  }
});

it('trims headers over maxHeaderBytes and drops a key over it, says which, stores once', async () => {
  const sink = createDeadLetterSink({ db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: env.topology, maxHeaderBytes: 4096 });
  await sink.start();
  try {
    const id = randomUUID();
    const headers: Record<string, string> = {};
    for (let i = 0; i < 20; i++) headers[`x-pad-${String(i).padStart(2, '0')}`] = 'p'.repeat(1000);
    const keyed = randomUUID();
    await publishDeadLetters(env, [
      deadLetterCopy({ messageId: id, headers }, { seal: env.seal }),
      deadLetterCopy({ messageId: keyed, key: 'k'.repeat(5000) }, { seal: env.seal }),
    ]);
    await vi.waitFor(async () => expect((await store.list()).filter((d) => [id, keyed].includes(d.messageId as typeof id))).toHaveLength(2), { timeout: 10_000, interval: 50 });
    await vi.waitFor(async () => expect(await queueDepth(env, env.topology.queue)).toBe(0), { timeout: 10_000, interval: 50 });
    const trimmed = await store.show(id);
    expect(Buffer.byteLength(JSON.stringify(trimmed?.headers))).toBeLessThanOrEqual(4096);
    expect(Object.keys(trimmed?.headers ?? {}).filter((n) => n.startsWith('x-pad-'))).toHaveLength(3);
    expect(trimmed?.changes).toEqual([expect.stringMatching(/^headers: 17 of \d+ left out \(over maxHeaderBytes 4096\): x-pad-03, x-pad-04, /)]);
    expect(trimmed?.replayTarget).toMatchObject({ replayable: false });
    const withKey = await store.show(keyed);
    expect(withKey?.key).toBeNull();
    expect(withKey?.changes).toContainEqual(expect.stringMatching(/^key: 5000 bytes, over maxHeaderBytes \(4096\): left out$/));
    expect(sink.stats).toMatchObject({ stored: 2, failures: 0 });
  } finally {
    await sink.stop();
  }
});

it('refuses a queue name whose parked queue would not fit AMQP\'s 255 bytes, at once', () => {
  const options = { db: env.db.pool, schema: env.db.schema, amqp: testUrls().amqpUrl, topology: { exchange: 'x', queue: 'q'.repeat(250) } };
  expect(() => createDeadLetterSink(options)).toThrow(/"<queue>.parked" must fit in 255 bytes/);
});
