// `mailroom chaos run` on the built CLI: argument handling (no run is started), the refusal of a
// remote target, and the user's checks: a handler that writes outside its transaction is flagged
// through the CLI with --checks, and without them the summary says what was not proved.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { spawnNode, testUrls } from '../../../test/helpers.js';

const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const unreachable = { MAILROOM_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', MAILROOM_AMQP_URL: 'amqp://127.0.0.1:1' };

async function run(args: string[], env: Record<string, string> = unreachable): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(cli, args, env);
  const { code } = await child.exited;
  return { code, output: child.output() };
}

describe('mailroom chaos', () => {
  it('lists every fault kind, the soak options, --checks and --allow-remote in --help', async () => {
    const { code, output } = await run(['chaos', '--help']);
    expect(code).toBe(0);
    for (const text of ['--seed', '--duration', '--json', '--history', 'kill-relay', 'restart-postgres', '--allow-restart-postgres', '--checks', '--allow-remote', 'hostile-headers', 'unpublishable-row']) {
      expect(output).toContain(text);
    }
  });

  it('refuses unknown fault kinds, bad durations and restarts without a command (exit 2)', async () => {
    expect(await run(['chaos', 'run', '--faults', 'kill-relay,nope'])).toMatchObject({ code: 2, output: expect.stringContaining('unknown fault kind nope') as unknown });
    expect(await run(['chaos', 'run', '--duration', 'soon'])).toMatchObject({ code: 2, output: expect.stringContaining('--duration') as unknown });
    expect(await run(['chaos', 'run', '--faults', 'all,restart-rabbitmq'])).toMatchObject({
      code: 2,
      output: expect.stringContaining('needs --allow-restart-rabbitmq') as unknown,
    });
    expect(await run(['chaos', 'walk'])).toMatchObject({ code: 2 });
  });

  it('refuses a database or broker on another machine without --allow-remote (exit 2, before any connection)', async () => {
    const remote = { MAILROOM_DATABASE_URL: 'postgres://app:s3cret@192.0.2.10:5432/prod', MAILROOM_AMQP_URL: 'amqp://127.0.0.1:1' };
    const refused = await run(['chaos', 'run', '--duration', '1s'], remote);
    expect(refused.code).toBe(2);
    expect(refused.output).toContain('databaseUrl points at "192.0.2.10", which is not this machine');
    expect(refused.output).toContain('--allow-remote');
    expect(refused.output).not.toContain('s3cret');
  });

  it('refuses a --checks module with neither setup nor verify (exit 2)', async () => {
    const { code, output } = await run(['chaos', 'run', '--checks', fixture('empty-checks.mjs')]);
    expect(code).toBe(2);
    expect(output).toContain('exports neither "setup" nor "verify"');
  });

  it("flags a handler that writes outside its transaction with --checks; without them, says it was not proved", { timeout: 180_000 }, async () => {
    const env = { MAILROOM_DATABASE_URL: testUrls().databaseUrl, MAILROOM_AMQP_URL: testUrls().amqpUrl };
    // No faults at all: only the harness's injected failures after the handler ran expose it.
    const args = ['chaos', 'run', '--seed', '7', '--duration', '5s', '--faults', 'none', '--failure-rate', '0.2', '--keys', '8', '--handler', fixture('leaky-effect.ts'), '--quiet'];
    const checked = await run([...args, '--checks', fixture('balance-checks.ts')], env);
    expect(checked.output).toContain('INVALID (seed 7');
    expect(checked.output).toMatch(/verify: \d+ problem\(s\): balance k\d: applied \d+ times, \d+ events committed/);
    expect(checked.output).not.toContain('not proved');
    expect(checked.code).toBe(1);

    // The same handler with its tables but no verify: valid, and the summary says what that does not prove.
    const unchecked = await run([...args, '--checks', fixture('no-verify-checks.mjs')], env);
    expect(unchecked.output).toContain('chaos: VALID (seed 7');
    expect(unchecked.output).toContain("not proved: your handler's effects were not checked");
    expect(unchecked.code).toBe(0);
  });
});
