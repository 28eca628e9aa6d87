// Part of `pnpm build` (after tsc): bundles what `mailroom relay` runs, dist/commands/relay.js and
// everything it imports (the mailroom packages' dist, pg, amqplib, prom-client, zod,
// @opentelemetry/api), into one file, dist/commands/relay.bundle.js, with a list of its inputs
// beside it (relay.bundle.json). Start-up of the sidecar is mostly resolving, reading and
// compiling some 450 small module files; one file costs a fraction of that (packages/cli/README.md,
// "Start-up"). The sources stay the truth: the bundle is made from the build's own output, is not
// committed (dist/ is ignored), and src/relay-bundle.ts falls back to dist/commands/relay.js when
// the bundle is missing or older than one of its inputs.
import { statSync, writeFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const entry = `${dist}commands/relay.js`;
const out = `${dist}commands/relay.bundle.js`;
// Shared with main.js, which has loaded them already: one copy of UsageError (main.ts tells bad
// usage by `instanceof`), and version.js finds package.json relative to its own file.
const SHARED = new Set([`${dist}command.js`, `${dist}version.js`]);

const result = await build({
  input: entry,
  platform: 'node',
  // kysely is an optional peer that core imports only when handed a kysely object (never here): it
  // stays the user's, and out of the file the relay compiles at every start.
  external: (id, importer) =>
    id === 'kysely' || (importer !== undefined && id.startsWith('.') && SHARED.has(fileURLToPath(new URL(id, `file://${importer}`)))),
  // An import the bundle could not resolve would fail at run time: a build failure, not a warning.
  onLog: (level, log, handler) => {
    if (log.code === 'UNRESOLVED_IMPORT') throw new Error(`bundling the relay: ${log.message}`);
    handler(level, log);
  },
  output: { file: out, format: 'esm', codeSplitting: false, keepNames: true, sourcemap: true },
});
const chunk = result.output.find((o) => o.type === 'chunk');
const files = chunk.moduleIds.filter((id) => id.startsWith('/'));
// The workspace's own modules only: what an edit and a `tsc -b` change (the dependencies change
// with the lockfile, and `pnpm install` is followed by `pnpm build`); stating each costs ~10 µs at start.
const inputs = files.filter((id) => !id.includes('/node_modules/')).map((id) => relative(`${dist}commands`, id));
writeFileSync(`${dist}commands/relay.bundle.json`, `${JSON.stringify({ inputs }, null, 1)}\n`);
console.log(`bundled the relay: ${relative(process.cwd(), out)}, ${files.length} modules (${inputs.length} of the workspace), ${Math.round(statSync(out).size / 1024)} KiB`);
