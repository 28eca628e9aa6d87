import tseslint from 'typescript-eslint';
import { FAN } from './scripts/fan.mjs';

// Each package imports only the packages of the fan (scripts/fan.mjs), always through a public
// entry (or core's `internal` subpath, which only mailroom's packages use).
const PACKAGES = ['@mailroom/core', '@mailroom/outbox', '@mailroom/inbox', '@mailroom/dlq', '@mailroom/saga', '@mailroom/chaos', '@mailroom/ui', 'mailroom'];

const deepImports = {
  // Any path below a package but core's internal subpath is a deep import (the examples' own
  // packages export named subpaths of their own).
  regex: '^@mailroom/(?!core/internal$)(?!example-)[^/]+/.+',
  message: 'Import a package through its public entry (or @mailroom/core/internal).',
};

function fanRule(pkg) {
  const allowed = FAN[pkg];
  const forbidden = PACKAGES.filter((name) => !allowed.includes(name) && name !== `@mailroom/${pkg}`);
  return [
    'error',
    {
      paths: [
        ...forbidden.map((name) => ({ name, message: `@mailroom/${pkg} stands on ${allowed.join(', ') || 'nothing'} only (the fan in DESIGN.md).` })),
        // zod is a peer (3.25+ or 4): on zod 3.25, plain 'zod' is the v3 API; 'zod/v4' is zod 4 in both.
        { name: 'zod', message: "Import from 'zod/v4': zod is a peer dependency (^3.25 || ^4), and 'zod' is zod 3's API on 3.25." },
      ],
      patterns: [
        deepImports,
        ...(allowed.includes('@mailroom/core') ? [] : [{ regex: '^@mailroom/core/internal$', message: `@mailroom/${pkg} may not import core.` }]),
      ],
    },
  ];
}

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/*.generated.ts', 'bench/results/**', '.ci/**', 'scratch/**'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A floating promise in a relay is a lost error or an unawaited publish: never allowed.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/require-await': 'off',
      'no-restricted-imports': ['error', { patterns: [deepImports] }],
    },
  },
  ...Object.keys(FAN).map((pkg) => ({
    files: [`packages/${pkg}/src/**/*.ts`],
    rules: { 'no-restricted-imports': fanRule(pkg) },
  })),
  {
    // Examples show what a user writes: public entries only, never core's internals.
    files: ['examples/**/*.ts', 'examples/**/*.mjs'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [deepImports, { regex: '^@mailroom/core/internal$', message: 'Examples use public entries only.' }] }],
    },
  },
);
