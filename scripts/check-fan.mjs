// Part of `pnpm lint`: each package's package.json depends only on the workspace packages the
// fan allows (DESIGN.md, "Packages"), so a consume-only service never installs the relay.
// eslint.config.js enforces the same fan on imports.
import { readFileSync } from 'node:fs';
import { FAN } from './fan.mjs';

const problems = [];
for (const [pkg, allowed] of Object.entries(FAN)) {
  const manifest = JSON.parse(readFileSync(new URL(`../packages/${pkg}/package.json`, import.meta.url), 'utf8'));
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
    for (const name of Object.keys(manifest[field] ?? {})) {
      if ((name.startsWith('@mailroom/') || name === 'mailroom') && !allowed.includes(name)) {
        problems.push(`packages/${pkg}/package.json: ${field} lists ${name}; ${manifest.name} may depend on ${allowed.join(', ') || 'no workspace package'}`);
      }
    }
  }
}
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
