import { readFileSync, statSync } from 'node:fs';
import type { Command } from './command.js';

/** Where `pnpm build` puts the relay's bundle (packages/cli/scripts/bundle-relay.mjs), beside dist/commands/relay.js. */
const BUNDLE = new URL('./commands/relay.bundle.js', import.meta.url);
const INPUTS = new URL('./commands/relay.bundle.json', import.meta.url);

/**
 * Whether the relay's bundle can stand in for its modules: it exists and none of the files it was
 * made from (listed beside it at build time) has changed since. An input that is not there is no
 * reason to refuse it (an installed package has no workspace around it); one that is newer is,
 * so a `tsc -b` without the bundling step never runs yesterday's code.
 */
export function relayBundleUsable(bundle: URL = BUNDLE, inputs: URL = INPUTS): boolean {
  try {
    const builtAt = statSync(bundle).mtimeMs;
    const { inputs: files } = JSON.parse(readFileSync(inputs, 'utf8')) as { inputs: string[] };
    const dir = new URL('.', bundle);
    for (const file of files) {
      const stat = statSync(new URL(file, dir), { throwIfNoEntry: false });
      if (stat !== undefined && stat.mtimeMs > builtAt) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * `mailroom relay`'s command: from the bundle when it is usable (one file to read and compile
 * instead of some 450 modules, the bulk of the sidecar's start-up CPU), else from its modules.
 */
export async function loadRelayCommand(): Promise<Command> {
  if (relayBundleUsable()) return ((await import(BUNDLE.href)) as { relayCommand: Command }).relayCommand;
  return (await import('./commands/relay.js')).relayCommand;
}
