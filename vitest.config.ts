import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string, entry = 'index'): string => fileURLToPath(new URL(`./packages/${pkg}/src/${entry}.ts`, import.meta.url));
const exact = (name: string): RegExp => new RegExp(`^${name.replace(/[/]/g, '\\/')}$`);

export default defineConfig({
  resolve: {
    // Tests run against the TypeScript sources of the workspace packages, not their builds.
    alias: [
      { find: exact('@mailroom/core'), replacement: src('core') },
      { find: exact('@mailroom/core/internal'), replacement: src('core', 'internal') },
      { find: exact('@mailroom/outbox'), replacement: src('outbox') },
      { find: exact('@mailroom/inbox'), replacement: src('inbox') },
      { find: exact('@mailroom/saga'), replacement: src('saga') },
      { find: exact('@mailroom/dlq'), replacement: src('dlq') },
      { find: exact('@mailroom/chaos'), replacement: src('chaos') },
      { find: exact('@mailroom/ui'), replacement: src('ui') },
    ],
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: files run two at a time; each file owns its schema and its broker prefix.
    maxWorkers: 2,
    pool: 'forks',
    // CI also writes a JSON report, to print a one-line summary of the counts.
    reporters: process.env.CI_VITEST_JSON_REPORT ? ['default', ['json', { outputFile: process.env.CI_VITEST_JSON_REPORT }]] : ['default'],
  },
});
