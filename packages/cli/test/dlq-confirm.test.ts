// Issue 9, defect 12: `dlq discard` asks before it deletes. On a terminal it takes a typed "yes";
// anything else, or the end of input, is a no; without a terminal nobody can answer (undefined),
// and the command then refuses unless --yes. The last test drives the built CLI through a real
// pseudo-terminal (util-linux `script`), when there is one.
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeadLetterStore, DEAD_LETTER_REASON, type DeadLetterStore } from '@mailroom/dlq';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers.js';
import { confirmOnTerminal } from '../src/commands/dlq-confirm.js';

function terminal(answer: string | null, isTTY = true): { input: PassThrough & { isTTY?: boolean }; output: PassThrough; asked: () => string } {
  const input = new PassThrough() as PassThrough & { isTTY?: boolean };
  input.isTTY = isTTY;
  const output = new PassThrough();
  let asked = '';
  output.on('data', (d: Buffer) => (asked += d.toString()));
  setImmediate(() => (answer === null ? input.end() : input.write(answer)));
  return { input, output, asked: () => asked };
}

describe('confirmOnTerminal', () => {
  it('is true only for a typed yes', async () => {
    for (const [typed, expected] of [
      ['yes\n', true],
      ['Y\n', true],
      ['no\n', false],
      ['\n', false],
      ['yess\n', false],
    ] as const) {
      const io = terminal(typed);
      expect(await confirmOnTerminal(io, 'Delete 3 dead letters?'), typed).toBe(expected);
      expect(io.asked()).toContain('Delete 3 dead letters? [y/N]');
    }
  });

  it('is false at the end of input, and undefined without a terminal (nobody asked)', async () => {
    expect(await confirmOnTerminal(terminal(null), 'Delete?')).toBe(false);
    const piped = terminal('yes\n', false);
    expect(await confirmOnTerminal(piped, 'Delete?')).toBeUndefined();
    expect(piped.asked()).toBe('');
  });
});

function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!hasScript())('mailroom dlq discard on a terminal', () => {
  const cli = fileURLToPath(new URL('../dist/main.js', import.meta.url));
  let db: TestDatabase;
  let store: DeadLetterStore;
  beforeAll(async () => {
    db = await createTestDatabase();
    store = createDeadLetterStore({ db: db.pool, schema: db.schema });
  });
  afterAll(async () => {
    await db.close();
  });

  async function onTerminal(answer: string, ...args: string[]): Promise<{ code: number | null; output: string }> {
    const command = [process.execPath, cli, ...args].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      env: { ...process.env, MAILROOM_DATABASE_URL: db.databaseUrl, MAILROOM_SCHEMA: db.schema },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('[y/N]')) child.stdin.end(answer);
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    return { code, output };
  }

  it('deletes after a typed yes, and nothing after a no', async () => {
    const id = randomUUID();
    await store.record({ messageId: id, source: 'billing', reason: DEAD_LETTER_REASON.maxAttempts, type: 'order.placed', payload: {} });
    const declined = await onTerminal('n\n', 'dlq', 'discard', id);
    expect(declined.output).toContain(`discard would delete 1 dead letter(s): ${id}. Delete them? [y/N]`);
    expect(declined.output).toContain('nothing discarded');
    expect(declined.code).toBe(1);
    expect(await store.show(id)).toBeDefined();
    const confirmed = await onTerminal('yes\n', 'dlq', 'discard', id);
    expect(confirmed.output).toContain('discarded 1 dead letter(s)');
    expect(confirmed.code).toBe(0);
    expect(await store.show(id)).toBeUndefined();
    expect((await store.actions()).map((a) => [a.action, a.count, a.messageIds])).toEqual([['discard', 1, [id]]]);
  });
});
