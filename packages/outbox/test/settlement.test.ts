// One row must never undo a confirmed batch (issue 9, defect 6): a dead letter that cannot be
// written, or an event listener that throws, leaves the other rows published once and deleted.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { DEAD_LETTER_REASON, defineMessage, grantsScript, type OutgoingMessage } from '@mailroom/core';
import { createRelay, type Relay, type RelayFailure } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { metricValue, outboxCount } from './relay-process.js';
import { commitEvents } from './commit-events.js';

let broker: TestBroker;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  broker = await createTestBroker();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await broker?.close();
});

const WAIT = { timeout: 30_000, interval: 50 };

async function add(db: TestDatabase, messages: OutgoingMessage[]): Promise<void> {
  await commitEvents(db.pool, db.schema, messages);
}

function startRelay(db: TestDatabase, database: string, overrides: Partial<Parameters<typeof createRelay>[0]> = {}): Relay {
  const relay = createRelay({
    database,
    amqp: testUrls().amqpUrl,
    schema: db.schema,
    batchSize: 50,
    concurrency: 1,
    pollIntervalMs: 100,
    retryInitialDelayMs: 100,
    retryMaxDelayMs: 300,
    maxMessageBytes: 1024,
    ...overrides,
  });
  cleanups.push(() => relay.stop());
  return relay;
}

const Event = (exchange: string) => defineMessage('settle.event', z.object({ n: z.number(), pad: z.string().optional() }), { exchange });

describe('settling a confirmed batch', () => {
  it('a relay role that loses INSERT on dead_letters: the good rows are published once each, the dead one waits with the error', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.close());
    // A relay role with the documented grants (start() checks them)...
    const role = `mr_relay_${randomBytes(4).toString('hex')}`;
    await db.pool.query(`CREATE ROLE ${role} LOGIN`);
    cleanups.push(async () => {
      await db.pool.query(`DROP OWNED BY ${role}`);
      await db.pool.query(`DROP ROLE ${role}`);
    });
    await db.pool.query(grantsScript(db.schema, { relay: role }));
    const url = new URL(testUrls().databaseUrl);
    url.username = role;
    url.password = '';
    const relay = startRelay(db, url.toString());
    await relay.start();
    // ... that loses INSERT on dead_letters while it runs.
    await db.pool.query(`REVOKE INSERT ON "${db.schema}".dead_letters FROM ${role}`);

    const exchange = broker.name('settle-grant');
    const queue = await broker.queueFor(exchange, '#');
    const received = broker.collect(queue);
    const good = [0, 1, 2].map((n) => Event(exchange).create({ n }));
    const big = Event(exchange).create({ n: 99, pad: 'x'.repeat(2048) });
    // One transaction, one batch: the dead letter is written in the batch that publishes the others.
    await add(db, [good[0], big, good[1], good[2]] as OutgoingMessage[]);

    // The big row stays, pushed back with the write error; its attempts show later batches ran.
    await vi.waitFor(async () => {
      const rows = await db.pool.query(`SELECT message_id, attempts, last_error FROM "${db.schema}".outbox`);
      expect(rows.rows.map((r) => (r as { message_id: string }).message_id)).toEqual([big.messageId]);
      const row = rows.rows[0] as { attempts: number; last_error: string };
      expect(row.attempts).toBeGreaterThanOrEqual(3);
      expect(row.last_error).toMatch(/cannot write the dead letter \(oversized: .*\): .*permission denied/);
    }, WAIT);
    // Each good row went out once: the batch that confirmed them was not rolled back and republished.
    await received.waitForCount(3);
    expect(received.ids().sort()).toEqual(good.map((m) => m.messageId).sort());
    expect(relay.stats.published).toBe(3);
    expect(relay.stats.deadLettered).toBe(0);
    const metrics = await relay.metrics.render();
    expect(metricValue(metrics, 'mailroom_relay_dead_letter_write_failures_total')).toBeGreaterThanOrEqual(3);

    // Once the grant is there, the row becomes the dead letter it should be.
    await db.pool.query(`GRANT INSERT ON "${db.schema}".dead_letters TO ${role}`);
    await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), WAIT);
    const dead = await db.pool.query(`SELECT reason FROM "${db.schema}".dead_letters WHERE message_id = $1`, [big.messageId]);
    expect(dead.rows).toEqual([{ reason: DEAD_LETTER_REASON.oversized }]);
    expect(received.ids()).toHaveLength(3);
    await received.stop();
  });

  it('one dead letter the table refuses does not keep the others of its batch out', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.close());
    // A trigger that refuses exactly one message.
    await db.pool.query(`CREATE FUNCTION "${db.schema}".refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.payload->>'n' = '7' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF; RETURN NEW; END $$`);
    await db.pool.query(`CREATE TRIGGER refuse_one BEFORE INSERT ON "${db.schema}".dead_letters FOR EACH ROW EXECUTE FUNCTION "${db.schema}".refuse_one()`);
    const exchange = broker.name('settle-trigger');
    const queue = await broker.queueFor(exchange, '#');
    const received = broker.collect(queue);
    const good = Event(exchange).create({ n: 1 });
    const refused = Event(exchange).create({ n: 7, pad: 'x'.repeat(2048) });
    const accepted = Event(exchange).create({ n: 8, pad: 'x'.repeat(2048) });
    await add(db, [refused, good, accepted]);
    const relay = startRelay(db, db.databaseUrl);
    await relay.start();
    await vi.waitFor(async () => {
      const rows = (await db.pool.query(`SELECT message_id, last_error FROM "${db.schema}".outbox`)).rows as Array<{ message_id: string; last_error: string }>;
      expect(rows.map((r) => r.message_id)).toEqual([refused.messageId]);
      expect(rows[0]?.last_error).toMatch(/refused by a test trigger/);
    }, WAIT);
    const dead = await db.pool.query(`SELECT message_id FROM "${db.schema}".dead_letters`);
    expect(dead.rows).toEqual([{ message_id: accepted.messageId }]);
    await received.waitForCount(1);
    expect(received.ids()).toEqual([good.messageId]);
    await received.stop();
  });

  it('a deadLettered listener that throws (or rejects) is logged and counted; the batch stays committed and the loop does not fail', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.close());
    const exchange = broker.name('settle-listener');
    const queue = await broker.queueFor(exchange, '#');
    const received = broker.collect(queue);
    const errors: string[] = [];
    const logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: (m: string) => errors.push(m) };
    const relay = startRelay(db, db.databaseUrl, { logger });
    const failures: RelayFailure[] = [];
    const seen: string[] = [];
    const batches: number[] = [];
    relay.on('failure', (f) => failures.push(f));
    relay.on('deadLettered', () => {
      throw new Error('a bug in a listener');
    });
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- a listener that rejects is what this test is about
    relay.on('deadLettered', async () => {
      await Promise.resolve();
      throw new Error('an async bug in a listener');
    });
    relay.on('deadLettered', (d) => seen.push(d.messageId));
    relay.on('batch', (b) => batches.push(b.deadLettered));
    const good = [0, 1].map((n) => Event(exchange).create({ n }));
    const big = Event(exchange).create({ n: 9, pad: 'x'.repeat(2048) });
    await add(db, [good[0], big, good[1]] as OutgoingMessage[]);
    await relay.start();
    await vi.waitFor(async () => expect(await outboxCount(db.pool, db.schema)).toBe(0), WAIT);
    await vi.waitFor(() => expect(seen).toEqual([big.messageId]), WAIT);
    await vi.waitFor(() => expect(batches).toContain(1), WAIT);
    await received.waitForCount(2);
    expect(received.ids().sort()).toEqual(good.map((m) => m.messageId).sort());
    await vi.waitFor(() => expect(errors.filter((e) => /'deadLettered' listener threw/.test(e))).toHaveLength(2), WAIT);
    expect(failures).toEqual([]);
    expect(relay.ready).toBe(true);
    const metrics = await relay.metrics.render();
    expect(metrics).toContain('mailroom_relay_listener_errors_total{event="deadLettered"} 2');
    await received.stop();
  });
});
