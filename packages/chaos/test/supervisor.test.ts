// The supervisor tells the exits the harness caused (its SIGKILL, an armed crash point, a stop
// answered by a clean exit) from every other one, which it records as an unexpected exit with
// the code and the last lines of output, and still restarts (issue 9: relays that died with
// code 1 at each backend termination were restarted and never reported).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { History, type HistoryOp } from '@mailroom/chaos';
import { classifyExit, crashExcerpt, type ExitFacts } from '../src/process-exit.js';
import { ProcessSlot } from '../src/supervisor.js';

const stub = fileURLToPath(new URL('./fixtures/worker-stub.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'chaos-supervisor-'));
const slots: ProcessSlot[] = [];
afterAll(async () => {
  await Promise.all(slots.map((s) => s.stop(1000)));
  rmSync(dir, { recursive: true, force: true });
});

function slot(name: string, env: Record<string, string>): { slot: ProcessSlot; history: History } {
  const history = new History();
  const s = new ProcessSlot({ name, role: 'relay', script: stub, env }, history, 100, () => undefined);
  slots.push(s);
  return { slot: s, history };
}

const exits = (history: History): HistoryOp[] => history.ops.filter((op) => op.f === 'exit');
const unexpected = (history: History): HistoryOp[] => history.ops.filter((op) => op.f === 'unexpected-exit');

describe('classifyExit', () => {
  const facts = (f: Partial<ExitFacts>): ExitFacts => ({ code: null, signal: null, killedByHarness: false, terminatedByHarness: false, crashPointsArmed: false, sawCrashPoint: false, ...f });
  it.each([
    [{ signal: 'SIGKILL', killedByHarness: true }, 'killed'],
    [{ signal: 'SIGKILL', crashPointsArmed: true, sawCrashPoint: true }, 'crash-point'],
    [{ code: 0, terminatedByHarness: true }, 'stopped'],
    [{ signal: 'SIGTERM', terminatedByHarness: true }, 'stopped'],
    [{ code: 1 }, 'unexpected'],
    [{ code: 0 }, 'unexpected'], // nobody asked it to stop
    [{ code: 1, terminatedByHarness: true }, 'unexpected'], // its shutdown crashed
    [{ signal: 'SIGKILL' }, 'unexpected'], // the OOM killer, say
    [{ signal: 'SIGKILL', sawCrashPoint: true }, 'unexpected'], // a crash point nobody armed
    [{ signal: 'SIGABRT', killedByHarness: true }, 'unexpected'],
  ] as Array<[Partial<ExitFacts>, string]>)('%o is %s', (f, cause) => {
    expect(classifyExit(facts(f))).toBe(cause);
  });
});

describe('crashExcerpt', () => {
  it('keeps the last uncaught exception from its header on, without the reports and undefined fields around it', () => {
    const output = [
      '{"event":"retrying","id":"x"}',
      '/work/main/node_modules/pg-pool/index.js:45',
      '    Error.captureStackTrace(err)',
      'node:events:505',
      "      throw er; // Unhandled 'error' event",
      '      ^',
      '',
      'error: terminating connection due to administrator command',
      '    at Parser.parseErrorMessage (pg-protocol/dist/parser.js:285:98)',
      "Emitted 'error' event on Client instance at:",
      '    at Client._handleErrorMessage (pg/lib/client.js:433:12) {',
      "  severity: 'FATAL',",
      "  code: '57P01',",
      '  detail: undefined,',
      '}',
    ];
    expect(crashExcerpt(output)).toEqual([
      'node:events:505',
      "      throw er; // Unhandled 'error' event",
      '      ^',
      'error: terminating connection due to administrator command',
      '    at Parser.parseErrorMessage (pg-protocol/dist/parser.js:285:98)',
      "Emitted 'error' event on Client instance at:",
      '    at Client._handleErrorMessage (pg/lib/client.js:433:12) {',
      "  severity: 'FATAL',",
      "  code: '57P01',",
      '}',
    ]);
    expect(crashExcerpt(['a', 'b', 'c'], 2)).toEqual(['b', 'c']);
  });
});

describe('supervisor', () => {
  it('records an exit of its own as unexpected (code, last output), and restarts the process', async () => {
    const { slot: s, history } = slot('relay-1', { STUB_MODE: 'exit-once', STUB_MARKER: join(dir, 'exit-once') });
    expect(await s.start()).toBe(true);
    await vi.waitFor(() => expect(unexpected(history)).toHaveLength(1), { timeout: 10_000 });
    const value = unexpected(history)[0]?.value as { code: number; signal: string | null; ready: boolean; lastLines: string[] };
    expect(value).toMatchObject({ code: 1, signal: null, ready: true });
    expect(value.lastLines.slice(-2)).toEqual(['stub: something went wrong', 'Error: read ECONNRESET']);
    expect(exits(history)[0]?.value).toMatchObject({ code: 1, cause: 'unexpected' });
    // Still restarted, so the run goes on.
    await vi.waitFor(() => expect(s.starts).toBe(2), { timeout: 10_000 });
    await vi.waitFor(() => expect(s.running).toBe(true), { timeout: 10_000 });
    expect(s.unexpectedExits).toBe(1);
  });

  it("does not count the nemesis's SIGKILL, an armed crash point or its own stop", async () => {
    const { slot: s, history } = slot('consumer-1', { STUB_MODE: 'stay' });
    expect(await s.start()).toBe(true);
    s.signal('SIGKILL');
    await vi.waitFor(() => expect(exits(history).map((op) => (op.value as { cause: string }).cause)).toEqual(['killed']), { timeout: 10_000 });
    await vi.waitFor(() => expect(s.running).toBe(true), { timeout: 10_000 });
    await s.armAndRestart('chaos.stub#1');
    await vi.waitFor(() => expect(s.crashes).toBe(1), { timeout: 10_000 });
    await vi.waitFor(() => expect(s.running).toBe(true), { timeout: 10_000 });
    await s.stop(2000);
    await vi.waitFor(() => expect(exits(history).map((op) => (op.value as { cause: string }).cause)).toEqual(['killed', 'stopped', 'crash-point', 'stopped']), {
      timeout: 10_000,
    });
    expect(unexpected(history)).toEqual([]);
    expect(s.unexpectedExits).toBe(0);
  });

  it('counts a shutdown that crashes (exit 1 after its SIGTERM)', async () => {
    const { slot: s, history } = slot('relay-2', { STUB_MODE: 'fail-on-term' });
    expect(await s.start()).toBe(true);
    await s.stop(2000);
    await vi.waitFor(() => expect(unexpected(history)).toHaveLength(1), { timeout: 10_000 });
    expect(unexpected(history)[0]?.value).toMatchObject({ code: 1 });
  });
});
