// `pnpm bench`: runs every bench/*.bench.mjs (or those named on the command line) one after the
// other, after checking that PostgreSQL and RabbitMQ answer. Each benchmark measures its baseline
// in the same run and prints medians of several runs and their ratios.
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('.', import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.mjs'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
const env = {
  ...process.env,
  MAILROOM_TEST_DATABASE_URL: process.env.MAILROOM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  MAILROOM_TEST_AMQP_URL: process.env.MAILROOM_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
};
const check = spawnSync(process.execPath, [fileURLToPath(new URL('../scripts/check-services.mjs', import.meta.url))], { stdio: 'inherit', env });
if (check.status !== 0) process.exit(1);
let failed = 0;
for (const file of files) {
  console.log(`\n### ${file}\n`);
  const result = spawnSync(process.execPath, [`${dir}/${file}`], { stdio: 'inherit', env });
  if (result.status !== 0) failed++;
}
process.exit(failed > 0 ? 1 : 0);
