// The workbench's operator overview (issue 13): outbox backlog and the age of its oldest row, rows
// waiting for a retry, relays and their partitions, registered consumers and their retention, read
// through @mailroom/outbox's and @mailroom/dlq's public APIs, and rendered as text (a relay's name
// is markup-free in the page whatever it holds).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue, type Relay } from '@mailroom/outbox';
import { startWorkbench, type RunningWorkbench } from '@mailroom/ui';
import { createTestDatabase, randomName, testUrls, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let workbench: RunningWorkbench;
const relays: Relay[] = [];
const ordered = randomName('orders-relay');
const hostile = `<img src=x onerror=alert(1)>${randomName('r')}`;

beforeAll(async () => {
  db = await createTestDatabase();
  const { databaseUrl, amqpUrl } = testUrls();
  await db.pool.query(
    `INSERT INTO "${db.schema}".outbox (message_id, type, exchange, routing_key, payload, created_at, available_at)
     SELECT gen_random_uuid(), 'bulk', 'nowhere', 'r', '{}'::jsonb, now() - interval '2 hours', now() + interval '1 hour' FROM generate_series(1, 7)`,
  );
  await db.pool.query(`UPDATE "${db.schema}".outbox SET attempts = 3 WHERE id IN (SELECT id FROM "${db.schema}".outbox ORDER BY id LIMIT 2)`);
  const Later = defineMessage('overview.later', z.object({ n: z.number() }));
  const client = await db.pool.connect();
  await client.query('BEGIN');
  await enqueue(client, [Later.create({ n: 1 }), Later.create({ n: 2 }), Later.create({ n: 3 })], { schema: db.schema, deliverAt: new Date('2031-01-01T00:00:00Z') });
  await client.query('COMMIT');
  client.release();
  await db.pool.query(`INSERT INTO "${db.schema}".inbox_consumers (consumer, queue, retention_ms, retry_horizon_ms) VALUES ('billing', 'billing.orders', 604800000, 3600000)`);
  // Every row is due in an hour: the relays claim nothing, the backlog stays as planted, and they
  // lease partitions and wait for work.
  relays.push(
    createRelay({ database: databaseUrl, amqp: amqpUrl, schema: db.schema, ordering: true, partitions: 6, leaseHeartbeatMs: 100, name: ordered }),
    createRelay({ database: databaseUrl, amqp: amqpUrl, schema: db.schema, pollIntervalMs: 100, name: hostile }),
  );
  for (const r of relays) await r.start();
  workbench = await startWorkbench({ db: db.pool, schema: db.schema, port: 0, actor: 'ui-test' });
});

afterAll(async () => {
  await workbench?.stop();
  for (const r of relays) await r.stop();
  await db?.close();
});

const text = (html: string): string =>
  html
    .replace(/<[^>]+>/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
    .replace(/&quot;|&#34;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/\s+/g, ' ');

describe('the overview page', () => {
  it('shows the backlog, the oldest row, retries, relays with their partitions and consumers with their retention', async () => {
    let html = '';
    await vi.waitFor(
      async () => {
        html = await (await fetch(workbench.url)).text();
        expect(text(html)).toContain(`${ordered} ordering 6 0–5 `);
        expect(html).toContain('id="partitions-leased">6 partitions leased in all.');
        // The relay without ordering shows once it waits for work.
        expect(text(html)).toContain(`${hostile} unordered`);
      },
      { timeout: 20_000, interval: 100 },
    );
    expect(html).toMatch(/id="backlog">7</);
    expect(html).toMatch(/id="oldest">2\.0 h</);
    expect(html).toMatch(/id="retrying">2</);
    expect(html).toMatch(/id="scheduled">3</);
    expect(html).toContain('id="scheduled-next">next at 2031-01-01 00:00:00Z<');
    const page = text(html);
    expect(page).toContain('Relays');
    expect(page).toContain('billing billing.orders 7.0 days 60 min');
    // The hostile relay name is text: escaped, never an element.
    expect(html).not.toContain('<img src=x');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
  });

  it('says so when no relay is visible', async () => {
    const other = await createTestDatabase();
    const empty = await startWorkbench({ db: other.pool, schema: other.schema, port: 0 });
    try {
      const html = await (await fetch(empty.url)).text();
      expect(html).toContain('No relay is visible');
      expect(html).toMatch(/id="backlog">0</);
      expect(html).toMatch(/id="oldest">—</);
    } finally {
      await empty.stop();
      await other.close();
    }
  });
});
