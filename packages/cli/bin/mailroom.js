#!/usr/bin/env node
// The `mailroom` bin. It is a committed file rather than dist/main.js itself because a package
// manager links bins at install time, before a workspace is built: pointing `bin` at a file that
// does not exist yet makes the first `pnpm install` of a fresh clone warn "Failed to create bin"
// and leaves no `mailroom` command. Installed from the registry, dist/ is always there.
import { existsSync } from 'node:fs';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'mailroom: the CLI is not built yet (no packages/cli/dist/main.js): run `pnpm build` at the root of the mailroom checkout.\n',
  );
  process.exit(1);
}
await import(main.href);
