// The sidecar's view of its links (issue 9, defect 12): an outage of PostgreSQL or RabbitMQ is
// counted by link, /readyz says which link is down, and /metrics costs bounded work however large
// the backlog.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { enqueue } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, startTcpProxy, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { outboxCount, startRelayProcess, type RelayProcess } from './relay-process.js';

let db: TestDatabase;
let broker: TestBroker;
const cleanups: Array<() => Promise<unknown> | void> = [];

beforeAll(async () => {
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await broker?.close();
  await db?.close();
});

const WAIT = { timeout: 30_000, interval: 100 };

/** A sample of a labelled metric, e.g. `mailroom_relay_outages_total{link="postgres"}`. */
function sample(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

async function readyz(relay: RelayProcess): Promise<{ status: number; body: { ready: boolean; links: Record<string, { up: boolean; error?: string }> } }> {
  const res = await fetch(`http://127.0.0.1:${await relay.port()}/readyz`);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as { ready: boolean; links: Record<string, { up: boolean; error?: string }> } };
}

describe('the sidecar and its links', () => {
  it('counts a PostgreSQL and a RabbitMQ outage once each, /readyz names the link that is down, and everything is published after', async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const pgProxy = await startTcpProxy(databaseUrl, 5432);
    const mqProxy = await startTcpProxy(amqpUrl, 5672);
    cleanups.push(() => pgProxy.close(), () => mqProxy.close());
    const exchange = broker.name('links');
    const queue = await broker.queueFor(exchange, '#');
    const received = broker.collect(queue);
    const Event = defineMessage('links.event', z.object({ n: z.number() }), { exchange });
    const relay = startRelayProcess(db.schema, { MAILROOM_DATABASE_URL: pgProxy.url(databaseUrl), MAILROOM_AMQP_URL: mqProxy.url(amqpUrl) });
    cleanups.push(() => relay.kill());
    await vi.waitFor(async () => expect((await readyz(relay)).body).toMatchObject({ ready: true, links: { postgres: { up: true }, rabbitmq: { up: true } } }), WAIT);

    // PostgreSQL goes away.
    pgProxy.setDown(true);
    await vi.waitFor(async () => {
      const { status, body } = await readyz(relay);
      expect(status).toBe(503);
      expect(body.ready).toBe(false);
      expect(body.links.postgres?.up).toBe(false);
      expect(body.links.postgres?.error).toMatch(/\S/);
      expect(body.links.rabbitmq?.up).toBe(true);
    }, WAIT);
    await vi.waitFor(async () => {
      const metrics = await relay.metrics();
      expect(sample(metrics, 'mailroom_relay_outages_total', 'link="postgres"')).toBe(1);
      expect(sample(metrics, 'mailroom_relay_batches_failed_total', 'link="postgres"')).toBeGreaterThanOrEqual(2);
      expect(sample(metrics, 'mailroom_relay_link_up', 'link="postgres"')).toBe(0);
    }, WAIT);
    const during = Array.from({ length: 10 }, (_, n) => Event.create({ n }));
    const client = await db.pool.connect();
    await client.query('BEGIN');
    await enqueue(client, during, { schema: db.schema });
    await client.query('COMMIT');
    client.release();
    pgProxy.setDown(false);
    await vi.waitFor(async () => expect((await readyz(relay)).status).toBe(200), WAIT);
    await received.waitForCount(10);

    // Then RabbitMQ.
    mqProxy.setDown(true);
    await vi.waitFor(async () => {
      const { status, body } = await readyz(relay);
      expect(status).toBe(503);
      expect(body.links.rabbitmq?.up).toBe(false);
      expect(body.links.postgres?.up).toBe(true);
    }, WAIT);
    await vi.waitFor(async () => expect(sample(await relay.metrics(), 'mailroom_relay_outages_total', 'link="rabbitmq"')).toBe(1), WAIT);
    mqProxy.setDown(false);
    await vi.waitFor(async () => expect((await readyz(relay)).status).toBe(200), WAIT);
    const metrics = await relay.metrics();
    // One outage each, however many batches failed while it lasted.
    expect(sample(metrics, 'mailroom_relay_outages_total', 'link="postgres"')).toBe(1);
    expect(sample(metrics, 'mailroom_relay_outages_total', 'link="rabbitmq"')).toBe(1);
    expect(await outboxCount(db.pool, db.schema)).toBe(0);
    relay.kill('SIGTERM');
    expect((await relay.exited).code).toBe(0);
    await received.stop();
  });

  it('/metrics reads at most about 10,000 outbox rows per 5 s, however large the backlog', async () => {
    const big = await createTestDatabase();
    cleanups.push(() => big.close());
    await big.pool.query(
      `INSERT INTO "${big.schema}".outbox (message_id, type, exchange, routing_key, payload)
       SELECT gen_random_uuid(), 'bulk', 'nowhere', 'r', '{}'::jsonb FROM generate_series(1, 40000)`,
    );
    const tuplesRead = async (): Promise<number> => {
      const result = await big.pool.query(
        `SELECT coalesce(t.seq_tup_read, 0) + coalesce((SELECT sum(i.idx_tup_read) FROM pg_stat_user_indexes i WHERE i.relid = t.relid), 0) AS n
           FROM pg_stat_user_tables t WHERE t.schemaname = $1 AND t.relname = 'outbox'`,
        [big.schema],
      );
      return Number((result.rows[0] as { n: string }).n);
    };
    const before = await tuplesRead();
    // A broker that never answers: the relay never claims, so only the scrapes read the outbox.
    const relay = startRelayProcess(big.schema, { MAILROOM_AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' });
    cleanups.push(() => relay.kill());
    await vi.waitFor(() => expect(relay.output()).toContain('relay started'), WAIT);
    const scrapes: string[] = [];
    for (let i = 0; i < 5; i++) scrapes.push(await relay.metrics());
    for (const text of scrapes) {
      const backlog = Number(/^mailroom_outbox_backlog (\S+)$/m.exec(text)?.[1]);
      expect(backlog).toBeGreaterThan(10_000);
      expect(Number(/^mailroom_outbox_oldest_age_seconds (\S+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(0);
    }
    // The relay's sessions end with it, and PostgreSQL publishes their counts then.
    relay.kill('SIGTERM');
    await relay.exited;
    await vi.waitFor(async () => expect(await tuplesRead()).toBeGreaterThan(before), { timeout: 15_000, interval: 200 });
    const read = (await tuplesRead()) - before;
    // count(*) and min(created_at) over 40,000 rows at each of 5 scrapes would read 400,000.
    expect(read).toBeLessThan(25_000);
  });
});
