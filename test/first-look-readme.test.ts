// The README's marked blocks (issue 13, "the first hour"), checked without a network: `.ci/run`
// runs the install and run blocks and scripts/first-look.mjs runs "A first look" for real; this
// file catches, in `pnpm test`, the drift those would only find in CI: a pnpm pin that is not the
// `packageManager`, a package the first look imports but does not install, types a TypeScript
// user would miss, a migration step that went missing.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readmeBlock, readmeBlocks } from '../scripts/readme-block.mjs';

const root = new URL('..', import.meta.url);
const rootPackage = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { packageManager: string; engines: { node: string } };

/** The package names an `npm install …` / `pnpm add …` line of a block installs. */
function installed(block: string): Set<string> {
  const names = new Set<string>();
  for (const line of block.split('\n')) {
    const command = line.replace(/#.*$/, '');
    for (const part of command.split('&&')) {
      const words = part.trim().split(/\s+/);
      if (words[0] !== 'npm' || (words[1] !== 'install' && words[1] !== 'i')) continue;
      for (const word of words.slice(2)) {
        if (word.startsWith('-')) continue;
        // `name@range` → name (a scoped name keeps its leading @).
        names.add(word.replace(/(?<=.)@.*$/, ''));
      }
    }
  }
  return names;
}

/** The bare packages a module imports (`node:` built-ins left out), with their subpaths cut. */
function imported(code: string): Set<string> {
  const names = new Set<string>();
  for (const m of code.matchAll(/^import\s[^'"]*?from\s+'([^']+)'/gm)) {
    const spec = m[1] as string;
    if (spec.startsWith('node:') || spec.startsWith('.')) continue;
    names.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string));
  }
  return names;
}

describe("the README's install block", () => {
  const install = readmeBlock('install');

  it('installs exactly the pnpm of `packageManager` and a Node the engines admit, from npm alone', () => {
    const pinned = rootPackage.packageManager.replace(/^pnpm@/, '');
    expect(install).toMatch(new RegExp(`(^|\\s)pnpm@${pinned.replace(/\./g, '\\.')}(\\s|$)`, 'm'));
    const node = /(?:^|\s)node@(\d+)(?:\s|$)/m.exec(install);
    const least = Number(/>=\s*(\d+)/.exec(rootPackage.engines.node)?.[1]);
    expect(Number(node?.[1])).toBeGreaterThanOrEqual(least);
    // The machine has npm and nothing else: no corepack, no curl | sh, no global install.
    expect(install).not.toMatch(/corepack|curl|wget|\s-g\s|--global/);
    expect(install).toMatch(/^pnpm install\s*$/m);
  });

  it('is followed by a run block with the demo and the tests', () => {
    expect(readmeBlock('run')).toMatch(/^pnpm demo\b[\s\S]*^pnpm test\b/m);
  });
});

describe('"A first look"', () => {
  const setup = installed(readmeBlock('first-look-install'));
  const code = readmeBlock('first-look.ts');
  const run = readmeBlock('first-look-run');

  it('installs every package its code imports, zod and pg among them', () => {
    const imports = imported(code);
    expect([...imports].sort()).toEqual(expect.arrayContaining(['@mailroom/core', '@mailroom/outbox', '@mailroom/inbox', '@mailroom/dlq', 'pg', 'zod']));
    for (const name of imports) expect(setup, `"${name}" is imported but not installed`).toContain(name);
  });

  it('names what a TypeScript user needs: typescript, @types/node and the types of every untyped import', () => {
    expect(setup).toContain('typescript');
    expect(setup).toContain('@types/node');
    // pg ships no types of its own; the @mailroom packages, zod and the rest do.
    if (imported(code).has('pg')) expect(setup).toContain('@types/pg');
    expect(run).toMatch(/^npx tsc --noEmit --strict .*first-look\.ts$/m);
  });

  it('migrates before it runs, with the CLI it installs', () => {
    expect(setup).toContain('mailroom');
    const lines = run.split('\n');
    const migrate = lines.findIndex((l) => /^npx mailroom migrate\b/.test(l));
    const start = lines.findIndex((l) => /^node first-look\.ts\b/.test(l));
    expect(migrate).toBeGreaterThanOrEqual(0);
    expect(start).toBeGreaterThan(migrate);
  });

  it('says how zod 3.25 users import zod, in the line scripts/first-look.mjs switches', () => {
    expect(code).toContain("import { z } from 'zod'; // zod 4; on zod 3.25, import { z } from 'zod/v4'");
  });
});

describe('scripts/readme-block.mjs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'readme-block-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('reads a marked block and only that one', () => {
    const path = file('ok.md', 'text\n<!-- readme-block: a -->\n```sh\necho a\n\necho b\n```\n\n```sh\nnot marked\n```\n');
    const blocks = readmeBlocks(path);
    expect([...blocks.keys()]).toEqual(['a']);
    expect(blocks.get('a')).toEqual({ lang: 'sh', info: 'sh', text: 'echo a\n\necho b\n' });
  });

  it('refuses a marker without a block, an unclosed block, a name used twice and a missing name', () => {
    expect(() => readmeBlocks(file('lone.md', '<!-- readme-block: a -->\ntext\n'))).toThrow(/not followed by a fenced code block/);
    expect(() => readmeBlocks(file('open.md', '<!-- readme-block: a -->\n```sh\necho\n'))).toThrow(/not closed/);
    expect(() => readmeBlocks(file('twice.md', '<!-- readme-block: a -->\n```\n1\n```\n<!-- readme-block: a -->\n```\n2\n```\n'))).toThrow(/used twice/);
    expect(() => readmeBlock('b', file('other.md', '<!-- readme-block: a -->\n```\n1\n```\n'))).toThrow(/no block marked <!-- readme-block: b --> \(it has: a\)/);
  });
});
