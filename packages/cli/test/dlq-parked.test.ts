// Sequenced dead letters in `mailroom dlq` (issue 12): `list` and `show` say which head a parked
// message waits behind; a replay of the head says what it released, in order; a parked message
// replayed alone is skipped with the reason. The parks are planted as a consumer with ordering
// writes them (packages/inbox/test/parking.test.ts has the consumer doing it). Runs the built CLI
// (`pnpm exec tsc -b packages/cli/tsconfig.build.json`).
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeadLetterStore } from '@mailroom/dlq';
import { createTestDatabase, spawnNode, type TestDatabase } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
let db: TestDatabase;
const source = 'orders.billing';
const head = randomUUID();
const parked = [randomUUID(), randomUUID()];

beforeAll(async () => {
  db = await createTestDatabase();
  const store = createDeadLetterStore({ db: db.pool, schema: db.schema });
  const base = { source, type: 'order.placed', exchange: 'orders', routingKey: 'order.placed', key: 'customer-1' };
  await store.record({ ...base, messageId: head, reason: 'max-attempts', error: 'Failed 3 time(s)', payload: { n: 0 } });
  for (const [i, messageId] of parked.entries()) await store.record({ ...base, messageId, reason: 'parked', error: `Parked behind ${head}`, payload: { n: i + 1 } });
  await db.pool.query(`INSERT INTO "${db.schema}".parked_keys (source, key_hash, head_message_id) VALUES ($1, '\\x00', $2)`, [source, head]);
  for (const messageId of parked) {
    await db.pool.query(`INSERT INTO "${db.schema}".parked_messages (source, head_message_id, message_id) VALUES ($1, $2, $3)`, [source, head, messageId]);
  }
});
afterAll(async () => {
  await db.close();
});

async function mailroom(...args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(CLI, args, { MAILROOM_DATABASE_URL: db.databaseUrl, MAILROOM_SCHEMA: db.schema });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

describe('mailroom dlq and parked messages', () => {
  it('list and show say "parked behind <head>"; a parked one alone is not replayed; a replay of the head releases them in order', async () => {
    const listed = await mailroom('dlq', 'list');
    expect(listed.code).toBe(0);
    const lines = listed.output.split('\n');
    for (const id of parked) expect(lines.find((l) => l.includes(id))).toContain(`parked behind ${head}`);
    expect(lines.find((l) => l.includes(head) && !l.includes('parked behind'))).toContain('orders / order.placed');
    const json = JSON.parse((await mailroom('dlq', 'list', '--json')).output) as Array<{ messageId: string; parkedBehind?: string }>;
    expect(json.find((d) => d.messageId === parked[0])?.parkedBehind).toBe(head);

    expect((await mailroom('dlq', 'show', parked[1] as string)).output).toContain(`parked behind ${head}`);
    const alone = await mailroom('dlq', 'replay', parked[0] as string);
    expect(alone.output).toContain('replayed 0 message(s)');
    expect(alone.output).toContain(`parked behind ${head}: replay or discard that head`);

    const replayed = await mailroom('dlq', 'replay', head);
    expect(replayed.code).toBe(0);
    expect(replayed.output).toContain(`replayed 1 message(s): ${head}`);
    expect(replayed.output).toContain(`released 2 parked message(s) behind their head, in order: ${parked.join(' ')}`);
    const outbox = await db.pool.query<{ message_id: string }>(`SELECT message_id::text FROM "${db.schema}".outbox ORDER BY id`);
    expect(outbox.rows.map((r) => r.message_id)).toEqual([head, ...parked]);
    // Released: no longer listed as parked behind it.
    expect((await mailroom('dlq', 'list')).output).not.toContain('parked behind');
  });
});
