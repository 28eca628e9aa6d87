// `mailroom history`: list, show, replay and prune over an archive written here directly (the
// relay's side is tested in packages/outbox/test/history-replay.test.ts).
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import amqp from 'amqplib';
import pg from 'pg';
import { migrate } from '@mailroom/core';
import { listHistory } from '@mailroom/outbox';
import { randomName, spawnNode, testUrls } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const { databaseUrl, amqpUrl } = testUrls();
const schema = randomName('hist');
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
const ids = Array.from({ length: 6 }, () => randomUUID());
let connection: amqp.ChannelModel;
let channel: amqp.Channel;
const queue = randomName('hist-q');

async function run(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(CLI, ['history', ...args], { MAILROOM_DATABASE_URL: databaseUrl, MAILROOM_AMQP_URL: amqpUrl, MAILROOM_SCHEMA: schema });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

beforeAll(async () => {
  await migrate(pool, { schema });
  for (const [i, id] of ids.entries()) {
    await pool.query(
      `INSERT INTO "${schema}".outbox_archive (outbox_id, message_id, type, exchange, routing_key, key, headers, payload, occurred_at, published_at)
       VALUES ($1, $2, $3, 'shop', 'order.placed', $4, $5, $6, now() - interval '1 hour', now() - ($7 || ' minutes')::interval)`,
      [i + 1, id, i % 2 === 0 ? 'order.placed' : 'order.paid', `order-${i % 3}`, JSON.stringify({ 'x-mailroom-version': '2' }), JSON.stringify({ n: i, evil: '\u001b[2J' }), 60 - i],
    );
  }
  connection = await amqp.connect(amqpUrl);
  channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: false });
});

afterAll(async () => {
  await channel?.deleteQueue(queue).catch(() => undefined);
  await connection?.close().catch(() => undefined);
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
});

it('lists by type and key, newest first, and shows one event with its version header, escaped', async () => {
  const listed = await run(['list', '--key', 'order-0', '--json']);
  expect(listed.code).toBe(0);
  const events = JSON.parse(listed.output) as Array<{ messageId: string }>;
  expect(events.map((e) => e.messageId)).toEqual([ids[3], ids[0]]);
  const table = await run(['list', '--type', 'order.paid']);
  expect(table.output.split('\n').filter((l) => l.includes('order.paid'))).toHaveLength(3);
  const shown = await run(['show', ids[2] as string]);
  expect(shown.code).toBe(0);
  expect(shown.output).toContain('"x-mailroom-version":"2"');
  expect(shown.output).not.toContain('\u001b');
  expect((await run(['show', randomUUID()])).code).toBe(1);
  expect((await run(['show', 'not-a-uuid'])).code).not.toBe(0);
  expect((await run(['list', '--limit', '0'])).code).toBe(2);
  expect((await run(['replay'])).output).toContain('replay needs --queue');
});

it('replays to one queue in outbox order with the original message ids, progress on stderr, and says when --since is past retention', async () => {
  const result = await run(['replay', '--queue', queue, '--since', '30d', '--rate', '1000/s']);
  expect(result.code).toBe(0);
  expect(result.output).toContain('older than the oldest archived event');
  expect(result.output).toContain('replayed 6 events');
  const got: string[] = [];
  for (;;) {
    const m = await channel.get(queue, { noAck: true });
    if (m === false) break;
    got.push(String(m.properties.messageId));
    expect(m.properties.headers?.['x-mailroom-version']).toBe('2');
  }
  expect(got).toEqual(ids);
  const absent = await run(['replay', '--queue', randomName('absent')]);
  expect(absent.code).not.toBe(0);
  expect(absent.output).toContain('does not exist');
});

it('replays several types in one outbox order with a repeated --type; a list of no types or a NUL type is refused', async () => {
  const both = await run(['replay', '--queue', queue, '--type', 'order.paid', '--type', 'order.placed']);
  expect(both.code).toBe(0);
  const paidOnly = await run(['replay', '--queue', queue, '--type', 'order.paid', '--type', 'no.such.type']);
  expect(paidOnly.code).toBe(0);
  const got: string[] = [];
  for (;;) {
    const m = await channel.get(queue, { noAck: true });
    if (m === false) break;
    got.push(String(m.properties.messageId));
  }
  // Both types interleaved in outbox order, then the odd (order.paid) ones only.
  expect(got).toEqual([...ids, ids[1], ids[3], ids[5]]);
  const listed = JSON.parse((await run(['list', '--type', 'order.placed', '--type', 'order.paid', '--json'])).output) as Array<{ messageId: string }>;
  expect(listed).toHaveLength(6);
  await expect(listHistory(pool, { schema, type: [] })).rejects.toThrow(/list of 1 to 1000 strings/);
  await expect(listHistory(pool, { schema, type: ['order.paid', 'a\u0000b'] })).rejects.toThrow(/without NUL/);
});

it('prune makes the coming days\' partitions and drops a day past retention whole', async () => {
  await pool.query(`CREATE TABLE "${schema}".outbox_archive_20200101 PARTITION OF "${schema}".outbox_archive FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-01-02 00:00+00')`);
  await pool.query(
    `INSERT INTO "${schema}".outbox_archive (outbox_id, message_id, type, exchange, routing_key, payload, occurred_at, published_at) VALUES (100, $1, 't', 'x', 'r', '{}', '2020-01-01 12:00+00', '2020-01-01 12:00+00')`,
    [randomUUID()],
  );
  const result = await run(['prune', '--retention-days', '7']);
  expect(result.code).toBe(0);
  const summary = JSON.parse(result.output) as { created: string[]; dropped: string[] };
  expect(summary.dropped).toEqual(['outbox_archive_20200101']);
  // Today's rows sit in the default partition, so today is skipped (unless they were yesterday's).
  expect(summary.created.length).toBeGreaterThanOrEqual(2);
  const again = JSON.parse((await run(['prune'])).output) as { created: string[]; dropped: string[] };
  expect(again).toMatchObject({ created: [], dropped: [] });
  const count = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".outbox_archive`);
  expect(count.rows[0]?.n).toBe(6);
});
