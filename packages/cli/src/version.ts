import { readFileSync } from 'node:fs';

/**
 * The version of the `mailroom` package, read from its package.json (one directory above both
 * src/ and dist/), so `--version`, the build-info metric and the published package never disagree.
 */
export function cliVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
