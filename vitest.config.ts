import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string): string => fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the TypeScript sources of the workspace packages, not their builds.
    alias: {
      '@mailroom/core': src('core'),
      '@mailroom/outbox': src('outbox'),
      '@mailroom/inbox': src('inbox'),
      '@mailroom/dlq': src('dlq'),
      '@mailroom/chaos': src('chaos'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
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
