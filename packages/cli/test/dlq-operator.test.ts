// Issue 9, defect 12 (dlq): operator traps. `dlq discard` deleted at once (no dry run, no
// confirmation); a replay with no registered consumer skipped the age check; the text output
// printed control characters from message fields (terminal escapes) as they were; and nothing
// recorded who replayed or discarded what. Runs the built CLI (`pnpm exec tsc -b packages/cli/tsconfig.build.json`).
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_REASON } from '@mailroom/core';
import { createDeadLetterStore, type DeadLetterStore } from '@mailroom/dlq';
import { createTestDatabase, spawnNode, type TestDatabase } from '../../../test/helpers.js';

const CLI = fileURLToPath(new URL('../dist/main.js', import.meta.url));
let db: TestDatabase;
let store: DeadLetterStore;
beforeAll(async () => {
  db = await createTestDatabase();
  store = createDeadLetterStore({ db: db.pool, schema: db.schema });
});
afterAll(async () => {
  await db.close();
});

async function mailroom(...args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(CLI, args, { MAILROOM_DATABASE_URL: db.databaseUrl, MAILROOM_SCHEMA: db.schema });
  const exit = await child.exited;
  return { code: exit.code, output: child.output() };
}

async function record(fields: Partial<Parameters<DeadLetterStore['record']>[0]> = {}): Promise<string> {
  const messageId = randomUUID();
  await store.record({
    messageId,
    source: 'billing',
    reason: DEAD_LETTER_REASON.maxAttempts,
    error: 'Error: ledger locked',
    type: 'order.placed',
    exchange: 'orders',
    routingKey: 'order.placed',
    payload: { orderId: 'o-1', total: 1 },
    ...fields,
  });
  return messageId;
}

async function exists(messageId: string): Promise<boolean> {
  return (await store.show(messageId)) !== undefined;
}

async function audit(): Promise<Array<{ actor: string; action: string; count: number; message_ids: string[] }>> {
  const result = await db.pool.query(`SELECT actor, action, count, message_ids::text[] AS message_ids FROM "${db.schema}".dead_letter_actions ORDER BY id`);
  return result.rows as never;
}

// Every control character a terminal may act on: C0 but the line feeds we print, DEL, C1, and the bidi controls.
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

describe('mailroom dlq: operator traps', () => {
  it('discard deletes nothing without --yes (and no TTY), shows what it would do with --dry-run, and records who discarded what', async () => {
    const id = await record();
    const refused = await mailroom('dlq', 'discard', id);
    expect(refused.code).toBe(2);
    expect(refused.output).toContain('would delete 1 dead letter(s)');
    expect(refused.output).toContain('--yes');
    expect(await exists(id)).toBe(true);

    const dry = await mailroom('dlq', 'discard', id, '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.output).toContain(`would discard 1 dead letter(s): ${id}`);
    expect(await exists(id)).toBe(true);

    const done = await mailroom('dlq', 'discard', id, '--yes');
    expect(done.code).toBe(0);
    expect(done.output).toContain('discarded 1 dead letter(s)');
    expect(await exists(id)).toBe(false);
    const user = userInfo().username;
    expect(await audit()).toEqual([{ actor: expect.stringMatching(new RegExp(`^cli:${user}@`)) as unknown, action: 'discard', count: 1, message_ids: [id] }]);
  });

  it('refuses to replay a 400-day-old dead letter when no consumer is registered (default retention, said so) unless --force, and records the replay', async () => {
    const id = await record({ failedAt: new Date(Date.now() - 400 * 86_400_000) });
    const refused = await mailroom('dlq', 'replay', id);
    expect(refused.code).toBe(1);
    expect(refused.output).toMatch(/no consumer is registered in inbox_consumers: the default inbox retention \(7\.0 days\) applies; the oldest is 400\.0 days old/);
    expect(refused.output).toContain('--force');
    const forced = await mailroom('dlq', 'replay', id, '--force');
    expect(forced.code).toBe(0);
    expect(forced.output).toContain(`replayed 1 message(s): ${id}`);
    expect((await audit()).at(-1)).toMatchObject({ action: 'replay', count: 1, message_ids: [id] });
  });

  it('escapes every control character of message fields in text output; --json stays JSON with the same values', async () => {
    const hostile = '\u001b[31mred\u001b]0;owned\u0007 \u009b2J \u202eevil\u202c\u2066x\u2069\rline2\nline3';
    const id = await record({
      source: `q\u001b[2J`,
      type: `order\u001b[5m.placed`,
      error: `Error: ${hostile}`,
      key: `k\u0085`,
      headers: { [`x-\u001b[8m`]: hostile },
      payload: { note: hostile },
    });
    for (const args of [['list'], ['show', id], ['groups'], ['replay', id, '--dry-run']]) {
      const out = await mailroom('dlq', ...args);
      expect(out.code, out.output).toBe(0);
      expect(out.output).not.toMatch(UNSAFE);
    }
    const shown = await mailroom('dlq', 'show', id);
    expect(shown.output).toContain('type          order\\x1B[5m.placed');
    expect(shown.output).toContain('Error: \\x1B[31mred\\x1B]0;owned\\x07 \\x9B2J \\u202Eevil\\u202C\\u2066x\\u2069\\rline2\\nline3');

    const json = await mailroom('dlq', 'show', id, '--json');
    expect(json.output).not.toMatch(UNSAFE);
    const parsed = JSON.parse(json.output) as { type: string; error: string; payload: { note: string }; headers: Record<string, unknown> };
    expect(parsed.type).toBe(`order\u001b[5m.placed`);
    expect(parsed.error).toBe(`Error: ${hostile}`);
    expect(parsed.payload.note).toBe(hostile);
    expect(parsed.headers[`x-\u001b[8m`]).toBe(hostile);
    const listed = await mailroom('dlq', 'list', '--json');
    expect(listed.output).not.toMatch(UNSAFE);
    expect((JSON.parse(listed.output) as Array<{ messageId: string; key: string }>).find((d) => d.messageId === id)?.key).toBe('k\u0085');
  });

  it('list and show say where a replay goes, or why it cannot', async () => {
    const good = await record();
    const unsealed = await record({ source: 'unsealed', reason: DEAD_LETTER_REASON.unsealed, exchange: null, routingKey: null });
    const shown = await mailroom('dlq', 'show', good);
    expect(shown.output).toContain('replays to    exchange "orders", routing key "order.placed"');
    const refused = await mailroom('dlq', 'show', unsealed);
    expect(refused.output).toMatch(/replays to {4}cannot be replayed: .*no valid mailroom seal/);
    const listed = await mailroom('dlq', 'list');
    expect(listed.output).toContain('REPLAY TO');
    expect(listed.output).toMatch(/orders \/ order\.placed/);
    const json = JSON.parse((await mailroom('dlq', 'show', unsealed, '--json')).output) as { replayTarget: unknown };
    expect(json.replayTarget).toEqual({ replayable: false, why: expect.stringMatching(/no valid mailroom seal/) as unknown });
  });
});
