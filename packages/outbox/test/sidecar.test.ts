import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage, MailroomError } from '@mailroom/core';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { metricValue, startRelayProcess } from './relay-process.js';

let db: TestDatabase;
let broker: TestBroker;

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  await broker?.close();
  await db?.close();
});

describe('mailroom relay as its own process', () => {
  it('publishes, answers /healthz and /readyz, reports metrics, and on SIGTERM commits the batch in flight and exits 0', async () => {
    const exchange = broker.name('sidecar');
    const queue = await broker.queueFor(exchange, '#');
    const Event = defineMessage('sidecar.event', z.object({ n: z.number(), pad: z.string() }), { exchange });
    const total = 6000;
    const messages = Array.from({ length: total }, (_, n) => Event.create({ n, pad: 'x'.repeat(512) }));
    const client = await db.pool.connect();
    await client.query('BEGIN');
    await enqueue(client, messages, { schema: db.schema });
    await client.query('COMMIT');
    client.release();

    const relay = startRelayProcess(db.schema, { MAILROOM_BATCH_SIZE: '100', MAILROOM_CONCURRENCY: '1' });
    const port = await relay.port();
    const received = broker.collect(queue);
    await received.waitForCount(200);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    await vi.waitFor(async () => expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200), { timeout: 30_000, interval: 50 });
    const metrics = await relay.metrics();
    for (const name of [
      'mailroom_outbox_backlog',
      'mailroom_outbox_oldest_age_seconds',
      'mailroom_relay_published_total',
      'mailroom_relay_returned_total',
      'mailroom_relay_nacked_total',
      'mailroom_relay_commit_to_confirm_seconds_count',
    ]) {
      expect(Number.isFinite(metricValue(metrics, name)), `${name} in /metrics`).toBe(true);
    }
    expect(metricValue(metrics, 'mailroom_relay_published_total')).toBeGreaterThan(0);
    expect(metrics).toContain('mailroom_relay_commit_to_confirm_seconds_bucket{le="0.005"}');

    // SIGTERM while the drain is under way.
    relay.kill('SIGTERM');
    const exit = await relay.exited;
    expect(exit.code).toBe(0);
    expect(relay.output()).toContain('stop requested: finishing the batch in flight');
    // How far the drain got by then depends on the machine's speed; what must hold does not: every
    // row that left the outbox was published exactly once (the batch in flight was committed, not
    // rolled back and published again later), and nothing still in the outbox was published.
    const remaining = new Set(
      ((await db.pool.query(`SELECT message_id FROM "${db.schema}".outbox`)).rows as Array<{ message_id: string }>).map((r) => r.message_id),
    );
    const gone = messages.map((m) => m.messageId).filter((id) => !remaining.has(id));
    expect(gone.length).toBeGreaterThanOrEqual(200);
    await vi.waitFor(
      () => {
        const seen = new Set(received.ids());
        expect(gone.filter((id) => !seen.has(id))).toEqual([]);
      },
      { timeout: 30_000, interval: 50 },
    );
    // A little longer, so a late duplicate or a late publish of a remaining row would be seen.
    await new Promise((r) => setTimeout(r, 300));
    const ids = received.ids();
    expect(ids.filter((id) => remaining.has(id))).toEqual([]);
    expect(ids.length).toBe(gone.length);
    expect(new Set(ids).size).toBe(ids.length);
    await received.stop();
  });

  it('refuses a schema name that could carry SQL, and never prints a password', async () => {
    expect(() => createRelay({ database: 'postgres://x@127.0.0.1/test', amqp: 'amqp://127.0.0.1', schema: 'x"; drop table t;--' })).toThrowError(
      MailroomError,
    );
    expect(() => createRelay({ database: 'postgres://x@127.0.0.1/test', amqp: 'amqp://127.0.0.1', schema: 'x"; drop table t;--' })).toThrowError(
      /Invalid schema name/,
    );
    expect(() => createRelay({ database: 'postgres://x@127.0.0.1/test', amqp: 'amqp://127.0.0.1', batchsize: 3 } as never)).toThrowError(
      /unknown option "batchsize"/,
    );

    const bad = startRelayProcess(db.schema, { MAILROOM_SCHEMA: 'x"; drop table t;--' });
    expect((await bad.exited).code).not.toBe(0);
    expect(bad.output()).toMatch(/Invalid schema name/);

    // Wrong credentials for both links: the relay logs and exits, never showing the password.
    const { databaseUrl, amqpUrl } = testUrls();
    const dbUrl = new URL(databaseUrl);
    dbUrl.username = 'nobody_here';
    dbUrl.password = 'Sup3rS3cretPw';
    dbUrl.port = '1';
    const mqUrl = new URL(amqpUrl);
    mqUrl.password = 'Sup3rS3cretPw';
    const leaky = startRelayProcess(db.schema, { MAILROOM_DATABASE_URL: dbUrl.toString(), MAILROOM_AMQP_URL: mqUrl.toString() });
    const exit = await leaky.exited;
    expect(exit.code).toBe(1);
    expect(leaky.output()).toContain('***');
    expect(leaky.output()).not.toContain('Sup3rS3cretPw');

    // A relay whose broker password is wrong keeps retrying and logs without the password.
    const retrying = startRelayProcess(db.schema, { MAILROOM_AMQP_URL: mqUrl.toString() });
    await vi.waitFor(() => expect(retrying.output()).toMatch(/AMQP connect to .* failed/), { timeout: 20_000, interval: 50 });
    retrying.kill('SIGTERM');
    await retrying.exited;
    expect(retrying.output()).not.toContain('Sup3rS3cretPw');
    expect(retrying.output()).toContain('amqp://guest:***@');
  });
});
