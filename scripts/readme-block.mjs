// Prints (or returns) a fenced code block of the root README.md that is marked with an HTML
// comment on the line before it: `<!-- readme-block: NAME -->`. `.ci/run` runs the install and
// run blocks this way and scripts/first-look.mjs runs "A first look", so what CI does is what the
// README says, word for word, and the two cannot drift. Runs on any Node >= 18 (it is read before
// Node 24 is installed): plain node:fs, no dependencies.
//
//   node scripts/readme-block.mjs install     → the block's text on stdout
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const README = fileURLToPath(new URL('../README.md', import.meta.url));
const MARKER = /^<!--\s*readme-block:\s*([\w.-]+)\s*-->\s*$/;

/**
 * Every marked block of the README, by name: `{ lang, info, text }`. A name used twice, a marker
 * not followed by a fenced block, or an unclosed fence throws, so a broken README fails CI loudly.
 */
export function readmeBlocks(path = README) {
  const lines = readFileSync(path, 'utf8').split('\n');
  const blocks = new Map();
  for (let i = 0; i < lines.length; i++) {
    const marker = MARKER.exec(lines[i] ?? '');
    if (!marker) continue;
    const name = marker[1];
    const fence = /^(`{3,})(.*)$/.exec(lines[i + 1] ?? '');
    if (!fence) throw new Error(`README.md:${i + 1}: the marker "${name}" is not followed by a fenced code block`);
    const end = lines.findIndex((line, j) => j > i + 1 && line.trimEnd() === fence[1]);
    if (end < 0) throw new Error(`README.md:${i + 2}: the code block "${name}" is not closed`);
    if (blocks.has(name)) throw new Error(`README.md:${i + 1}: the block name "${name}" is used twice`);
    const info = fence[2].trim();
    blocks.set(name, { lang: info.split(/\s+/)[0] ?? '', info, text: `${lines.slice(i + 2, end).join('\n')}\n` });
    i = end;
  }
  return blocks;
}

/** The text of the README block `name`; throws naming the blocks there are when it is missing. */
export function readmeBlock(name, path = README) {
  const blocks = readmeBlocks(path);
  const block = blocks.get(name);
  if (!block) throw new Error(`README.md has no block marked <!-- readme-block: ${name} --> (it has: ${[...blocks.keys()].join(', ') || 'none'})`);
  return block.text;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const name = process.argv[2];
  if (!name) {
    process.stderr.write('usage: node scripts/readme-block.mjs NAME\n');
    process.exit(2);
  }
  try {
    process.stdout.write(readmeBlock(name));
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
}
