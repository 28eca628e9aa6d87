import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { deliveryKey } from '@mailroom/core/internal';
import { enqueue } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { partitionLockClass } from '../src/names.js';
import { metricValue, outboxCount, startRelayProcess, type RelayProcess } from './relay-process.js';

const KEYS = 50;
const PER_KEY = 200;
const PRODUCERS = 5;

let db: TestDatabase;
let broker: TestBroker;
const relays: RelayProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase({ max: PRODUCERS + 4 });
  broker = await createTestBroker();
});
afterAll(async () => {
  for (const r of relays) r.kill('SIGKILL');
  await broker?.close();
  await db?.close();
});

async function holders(): Promise<number[]> {
  const result = await db.pool.query(
    `SELECT pid, count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = $1::int::oid GROUP BY pid`,
    [partitionLockClass(db.schema)],
  );
  return (result.rows as Array<{ n: number }>).map((r) => r.n);
}

it('two relays in ordering mode deliver every key in outbox order, and one takes over when the other is killed', async () => {
  const exchange = broker.name('ordered');
  const queue = await broker.queueFor(exchange, '#');
  const Step = defineMessage('account.step', z.object({ key: z.string(), seq: z.number().int() }), { exchange });
  const received = broker.collect(queue);
  const env = { MAILROOM_ORDERING: 'true', MAILROOM_LEASE_HEARTBEAT_MS: '300', MAILROOM_BATCH_SIZE: '500' };
  relays.push(startRelayProcess(db.schema, env), startRelayProcess(db.schema, env));
  await Promise.all(relays.map((r) => r.port()));
  // Both relays hold a share of the partitions.
  await vi.waitFor(async () => expect((await holders()).length).toBe(2), { timeout: 15_000, interval: 50 });

  // Producers commit concurrently; each owns some keys and commits one event per key per transaction.
  const expected = new Map<string, string[]>();
  const produce = async (p: number): Promise<void> => {
    const client = await db.pool.connect();
    try {
      for (let seq = 0; seq < PER_KEY; seq++) {
        const batch = [];
        for (let k = p; k < KEYS; k += PRODUCERS) {
          const key = `acct-${k}`;
          const message = Step.create({ key, seq }, { key });
          batch.push(message);
          const list = expected.get(key) ?? [];
          list.push(message.messageId);
          expected.set(key, list);
        }
        await client.query('BEGIN');
        await enqueue(client, batch, { schema: db.schema });
        await client.query('COMMIT');
      }
    } finally {
      client.release();
    }
  };
  const producing = Promise.all(Array.from({ length: PRODUCERS }, (_, p) => produce(p)));

  // Kill one relay in the middle of the run.
  const distinct = (): number => new Set(received.ids()).size;
  await vi.waitFor(() => expect(distinct()).toBeGreaterThanOrEqual((KEYS * PER_KEY) / 3), { timeout: 60_000, interval: 50 });
  const [victim, survivor] = relays as [RelayProcess, RelayProcess];
  const victimPublished = metricValue(await victim.metrics(), 'mailroom_relay_published_total');
  const survivorPublishedBefore = metricValue(await survivor.metrics(), 'mailroom_relay_published_total');
  // Both shared the work before the kill.
  expect(victimPublished).toBeGreaterThan(0);
  expect(survivorPublishedBefore).toBeGreaterThan(0);
  victim.kill('SIGKILL');
  await victim.exited;
  expect(distinct()).toBeLessThan(KEYS * PER_KEY);
  await producing;

  await vi.waitFor(() => expect(distinct()).toBe(KEYS * PER_KEY), { timeout: 90_000, interval: 100 });
  await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), { timeout: 30_000, interval: 50 });
  // The survivor took every partition over.
  await vi.waitFor(async () => expect(await holders()).toEqual([64]), { timeout: 30_000, interval: 50 });
  expect(metricValue(await survivor.metrics(), 'mailroom_relay_published_total')).toBeGreaterThan(survivorPublishedBefore);

  // Per key, the first delivery of each event follows outbox order (duplicates after the kill are allowed).
  const firstSeen = new Map<string, number[]>();
  const seen = new Set<string>();
  for (const m of received.messages) {
    const id = String(m.properties.messageId);
    if (seen.has(id)) continue;
    seen.add(id);
    const body = JSON.parse(m.content.toString()) as { key: string; seq: number };
    const list = firstSeen.get(body.key) ?? [];
    list.push(body.seq);
    firstSeen.set(body.key, list);
  }
  expect(firstSeen.size).toBe(KEYS);
  const outOfOrder = [...firstSeen].filter(([, seqs]) => seqs.some((s, i) => s !== i)).map(([k]) => k);
  expect(outOfOrder).toEqual([]);
  for (const [key, ids] of expected) {
    const got = received.messages.filter((m) => deliveryKey(m) === key).map((m) => String(m.properties.messageId));
    expect(new Set(got)).toEqual(new Set(ids));
  }
  await received.stop();
  survivor.kill('SIGTERM');
  expect((await survivor.exited).code).toBe(0);
});
