// Sequenced dead letters in the workbench (issue 13, "parked messages shown behind their head"):
// the detail page of a parked message links the head it waits behind; the head's page lists what
// is parked behind it, in order, waiting or released. The parks are planted as a consumer with
// ordering writes them (see packages/inbox/test/parking.test.ts for the consumer doing it).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeadLetterStore } from '@mailroom/dlq';
import { startWorkbench, type RunningWorkbench } from '@mailroom/ui';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';

let db: TestDatabase;
let workbench: RunningWorkbench;
const source = 'orders.billing';
const head = randomUUID();
const parked = [randomUUID(), randomUUID(), randomUUID()];
// A key no page may show as markup.
const key = '<script>alert(1)</script>\u0007';

beforeAll(async () => {
  db = await createTestDatabase();
  const store = createDeadLetterStore({ db: db.pool, schema: db.schema });
  const base = { source, type: 'order.placed', exchange: 'orders', routingKey: 'order.placed', key };
  await store.record({ ...base, messageId: head, reason: 'max-attempts', error: 'Failed 3 time(s)', payload: { n: 0 } });
  // Stored in reverse (row ids), parked in order (seq): the page follows the order they arrived in.
  for (const [i, messageId] of [...parked.entries()].reverse()) {
    await store.record({ ...base, messageId, reason: 'parked', error: `Parked behind ${head}`, payload: { n: i + 1 } });
  }
  await db.pool.query(`INSERT INTO "${db.schema}".parked_keys (source, key_hash, head_message_id) VALUES ($1, '\\x00', $2)`, [source, head]);
  for (const messageId of parked) {
    await db.pool.query(`INSERT INTO "${db.schema}".parked_messages (source, head_message_id, message_id) VALUES ($1, $2, $3)`, [source, head, messageId]);
  }
  workbench = await startWorkbench({ db: db.pool, schema: db.schema, port: 0, actor: 'ui-test' });
});

afterAll(async () => {
  await workbench?.stop();
  await db?.close();
});

const page = async (path: string): Promise<string> => (await fetch(new URL(path, workbench.url))).text();

describe('parked messages in the workbench', () => {
  it("a parked message's page links its head; the head's page lists the parked ones in order, and marks released ones", async () => {
    const one = await page(`dead-letters/${parked[1]}`);
    expect(one).toContain('id="parked-behind"');
    expect(one).toContain(`/dead-letters/${head}"`);
    expect(one).toContain('with its head only');
    expect(one).not.toContain('<script>alert(1)');

    const headPage = await page(`dead-letters/${head}`);
    expect(headPage).toContain('Parked behind this one (3, 3 waiting)');
    const listed = [...headPage.matchAll(/<li><a href="[^"]*"><code>([0-9a-f-]{36})<\/code><\/a> \((waiting|released)\)<\/li>/g)].map((m) => [m[1], m[2]]);
    expect(listed).toEqual(parked.map((id) => [id, 'waiting']));
    expect(headPage).not.toContain('id="parked-behind"');

    // Released (as a replay of the head marks them): listed as released, no longer "parked behind".
    await db.pool.query(`UPDATE "${db.schema}".parked_keys SET released = $1::uuid[]`, [[head, ...parked]]);
    await db.pool.query(`UPDATE "${db.schema}".parked_messages SET released_at = now()`);
    const after = await page(`dead-letters/${head}`);
    expect(after).toContain('Parked behind this one (3, 0 waiting)');
    expect(after).toContain('Released: they went back in this order.');
    expect(await page(`dead-letters/${parked[1]}`)).not.toContain('id="parked-behind"');
  });
});
