// `mailroom chaos run` argument handling, on the built CLI (no run is started).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { spawnNode } from '../../../test/helpers.js';

const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
const env = { MAILROOM_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', MAILROOM_AMQP_URL: 'amqp://127.0.0.1:1' };

async function run(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawnNode(cli, args, env);
  const { code } = await child.exited;
  return { code, output: child.output() };
}

describe('mailroom chaos', () => {
  it('lists every fault kind and the soak options in --help', async () => {
    const { code, output } = await run(['chaos', '--help']);
    expect(code).toBe(0);
    for (const text of ['--seed', '--duration', '--json', '--history', 'kill-relay', 'restart-postgres', '--allow-restart-postgres']) expect(output).toContain(text);
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
});
