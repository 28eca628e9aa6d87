// `mailroom ui` (the built CLI: `pnpm build` first): serves the workbench on 127.0.0.1, refuses
// another address without a token, answers only with the token when it has one, stops on SIGTERM.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createTestDatabase, spawnNode, type TestDatabase } from '../../../test/helpers.js';

const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.close();
});

it('serves the workbench on 127.0.0.1 with its token, and stops on SIGTERM', async () => {
  const child = spawnNode(cli, ['ui', '--port', '0'], {
    MAILROOM_DATABASE_URL: db.databaseUrl,
    MAILROOM_SCHEMA: db.schema,
    MAILROOM_UI_TOKEN: 'a-long-enough-secret-token',
  });
  try {
    await vi.waitFor(() => expect(child.output()).toMatch(/workbench at http:\/\/127\.0\.0\.1:\d+\//), { timeout: 15_000, interval: 50 });
    const url = /workbench at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(child.output())?.[1] as string;
    expect((await fetch(url)).status).toBe(401);
    const page = await fetch(`${url}dead-letters`, { headers: { authorization: 'Bearer a-long-enough-secret-token' } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('No dead letter matches');
    child.kill('SIGTERM');
    expect(await child.exited).toEqual({ code: 0, signal: null });
  } finally {
    child.kill();
  }
});

it('refuses to bind an address other machines reach without a token (exit 1, says what to set)', async () => {
  const child = spawnNode(cli, ['ui', '--host', '0.0.0.0', '--port', '0'], { MAILROOM_DATABASE_URL: db.databaseUrl, MAILROOM_SCHEMA: db.schema });
  try {
    // The state asserted: the process ends by itself (a server that bound would run until stopped).
    await vi.waitFor(() => expect(child.process.exitCode).toBe(1), { timeout: 15_000, interval: 50 });
    expect(child.output()).toContain('give it a token (MAILROOM_UI_TOKEN');
  } finally {
    child.kill();
  }
});
