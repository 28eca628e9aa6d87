// Must-show 4 of issue 13: a new npm project outside the workspace installs the packed packages
// and follows the README's "A first look" word for word, from an empty database, and one event
// goes from the producer's transaction through the relay and RabbitMQ to the consumer's handler.
// The blocks come from README.md (scripts/readme-block.mjs), so the README cannot drift from what
// is run. Then the same project is switched to zod 3.25 and type-checked and run again through
// `zod/v4`, the way the README tells zod 3 users to import it.
//
//   node scripts/first-look.mjs           (after `pnpm build`; `.ci/run` runs it)
//
// The one liberty taken with the README: the registry has no @mailroom packages, so the install
// line's `@mailroom/*` and `mailroom` are replaced by the tarballs `pnpm pack` made of this
// checkout, and the tarballs of the internal packages they depend on (chaos, ui) are added to
// the same command. Everything else (pg, zod, typescript, @types/*) comes from the registry.
//
//   MAILROOM_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test): a database is
//     created next to it for the run and dropped after; MAILROOM_TEST_AMQP_URL (default
//     amqp://guest:guest@127.0.0.1:5672): a vhost of its own when rabbitmqctl is there.
//   FIRST_LOOK_KEEP=1 keeps the temporary project.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { readmeBlock } from './readme-block.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
// Every publishable package of the workspace, by name: the README's install line names some, and
// those depend on others (the CLI on all of them); each is packed and given to npm as a tarball.
const PACKAGES = Object.fromEntries(
  readdirSync(join(root, 'packages'))
    .filter((dir) => existsSync(join(root, 'packages', dir, 'package.json')))
    .map((dir) => [JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')).name, dir]),
);
const ZOD3 = '3.25.76';
const SUCCESS = /^order (\S+): event ([0-9a-f-]{36}) published, handled and billed once$/m;

const started = Date.now();
const say = (text) => console.log(`first-look [${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);

/** Runs a README block (or one command) with bash in `cwd`, failing loudly with its output. */
function sh(script, cwd, env = process.env, timeoutMs = 180_000) {
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) {
    throw new Error(`failed (${r.error?.message ?? `exit ${r.status}${r.signal ? `, ${r.signal}` : ''}`}) in ${cwd}:\n${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  }
  return r.stdout;
}

/** The README's install block with the @mailroom packages replaced by this checkout's tarballs. */
function withTarballs(block, tarballs) {
  const named = new Set();
  let appended = false;
  const out = block.split('\n').map((line) => {
    if (!/^\s*npm install\b/.test(line)) return line;
    const words = line.split(' ').map((word) => {
      if (!(word in tarballs)) return word;
      named.add(word);
      return tarballs[word];
    });
    if (named.size === 0 || appended) return words.join(' ');
    // What the named packages depend on: the registry would give them, here the tarballs do.
    appended = true;
    return [...words, ...Object.keys(tarballs).filter((name) => !named.has(name)).map((name) => tarballs[name])].join(' ');
  });
  if (named.size === 0) throw new Error('the README\'s first-look install block installs no @mailroom package');
  return out.join('\n');
}

function databaseUrlFor(baseUrl, database) {
  const url = new URL(baseUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function main() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 22 || (major === 22 && minor < 18)) throw new Error(`Node >= 22.18 is needed to run first-look.ts as it is (have ${process.version})`);
  for (const dir of Object.values(PACKAGES)) {
    if (!existsSync(join(root, 'packages', dir, 'dist'))) throw new Error(`packages/${dir}/dist is missing: run \`pnpm build\` first`);
  }
  const baseDatabaseUrl = process.env.MAILROOM_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const baseAmqpUrl = process.env.MAILROOM_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
  const work = mkdtempSync(join(tmpdir(), 'mailroom-first-look-'));
  const run = randomBytes(4).toString('hex');
  const database = `first_look_${run}`;
  const vhost = `first-look-${run}`;
  const admin = new pg.Pool({ connectionString: baseDatabaseUrl, max: 1 });
  let vhostMade = false;
  let ok = false;
  try {
    // The packed packages, as npm would get them from the registry (workspace:* rewritten).
    const packs = join(work, 'packs');
    const tarballs = {};
    for (const [name, dir] of Object.entries(PACKAGES)) {
      const before = new Set(existsSync(packs) ? readdirSync(packs) : []);
      execFileSync('pnpm', ['pack', '--pack-destination', packs], { cwd: join(root, 'packages', dir), stdio: ['ignore', 'ignore', 'inherit'] });
      const made = readdirSync(packs).filter((f) => !before.has(f) && f.endsWith('.tgz'));
      if (made.length !== 1) throw new Error(`pnpm pack in packages/${dir} made ${made.length} tarballs`);
      tarballs[name] = join(packs, made[0]);
    }
    say(`packed ${Object.keys(tarballs).join(', ')}`);

    // An empty database and, where the broker can be administered, an empty vhost.
    await admin.query(`CREATE DATABASE "${database}"`);
    let amqpUrl = baseAmqpUrl;
    if (spawnSync('rabbitmqctl', ['add_vhost', vhost], { stdio: 'ignore' }).status === 0) {
      vhostMade = true;
      const user = decodeURIComponent(new URL(baseAmqpUrl).username || 'guest');
      execFileSync('rabbitmqctl', ['set_permissions', '-p', vhost, user, '.*', '.*', '.*'], { stdio: 'ignore' });
      const url = new URL(baseAmqpUrl);
      url.pathname = `/${encodeURIComponent(vhost)}`;
      amqpUrl = url.toString();
    } else {
      say('rabbitmqctl is not available: using the broker URL as it is (the default vhost)');
    }
    const env = { ...process.env, MAILROOM_DATABASE_URL: databaseUrlFor(baseDatabaseUrl, database), MAILROOM_AMQP_URL: amqpUrl };
    for (const name of ['MAILROOM_SCHEMA', 'npm_config_prefix', 'NODE_OPTIONS']) delete env[name];

    // "A first look", as written. The install block makes the project directory and moves into it.
    const install = withTarballs(readmeBlock('first-look-install'), tarballs);
    const dirBefore = new Set(readdirSync(work));
    sh(install, work, env);
    const made = readdirSync(work).filter((f) => !dirBefore.has(f));
    if (made.length !== 1) throw new Error(`the install block was to make one project directory, made: ${made.join(', ') || 'none'}`);
    const project = join(work, made[0]);
    say(`installed the README's packages into ${project}`);
    const code = readmeBlock('first-look.ts');
    writeFileSync(join(project, 'first-look.ts'), code);
    const runBlock = readmeBlock('first-look-run');
    const output = sh(runBlock, project, env);
    const success = SUCCESS.exec(output);
    if (!success) throw new Error(`first-look.ts did not report the event as handled:\n${output}`);
    say(`ran the README's run block: ${success[0]}`);

    // What the database says, not only what the program printed.
    const db = new pg.Pool({ connectionString: env.MAILROOM_DATABASE_URL, max: 1 });
    try {
      const counts = async () =>
        (
          await db.query(`SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM invoices)::int AS invoices,
             (SELECT count(*) FROM mailroom.outbox)::int AS outbox,
             (SELECT count(*) FROM mailroom.inbox WHERE consumer = 'billing')::int AS inbox,
             (SELECT count(*) FROM mailroom.dead_letters)::int AS dead_letters`)
        ).rows[0];
      const first = await counts();
      const want = { orders: 1, invoices: 1, outbox: 0, inbox: 1, dead_letters: 0 };
      if (JSON.stringify(first) !== JSON.stringify(want)) throw new Error(`after the first look the database holds ${JSON.stringify(first)}, expected ${JSON.stringify(want)}`);
      const invoice = await db.query('SELECT total::int AS total FROM invoices WHERE order_id = $1', [success[1]]);
      if (invoice.rows[0]?.total !== 42) throw new Error(`no invoice of 42 for order ${success[1]}`);
      say(`database: ${JSON.stringify(first)}`);

      // zod 3.25: the same program with `zod/v4`, as the README's comment says, type-checks and
      // runs against mailroom's types (which import `zod/v4` themselves, a peer shared with the user).
      sh(`npm install --no-audit --no-fund --loglevel=error zod@${ZOD3}`, project, env);
      const zod3Code = code.replace("import { z } from 'zod';", "import { z } from 'zod/v4';");
      if (zod3Code === code) throw new Error("first-look.ts has no `import { z } from 'zod';` line to switch to 'zod/v4'");
      writeFileSync(join(project, 'first-look-zod3.ts'), zod3Code);
      const lines = runBlock.split('\n').filter((line) => /^(npx tsc|node) .*first-look\.ts/.test(line));
      if (lines.length !== 2) throw new Error(`the run block should have one \`npx tsc … first-look.ts\` and one \`node first-look.ts\` line:\n${runBlock}`);
      // The whole run block again (the CLI's `migrate` now runs on zod 3.25 too), on the zod 3 file.
      const zod3Output = sh(runBlock.replaceAll('first-look.ts', 'first-look-zod3.ts'), project, env);
      if (!SUCCESS.test(zod3Output)) throw new Error(`first-look-zod3.ts did not report the event as handled:\n${zod3Output}`);
      // For the record only: whether zod 3's own API (plain 'zod' on 3.25) also passes as a contract schema.
      const v3 = spawnSync('bash', ['-c', lines[0]], { cwd: project, env, encoding: 'utf8' });
      const second = await counts();
      if (second.invoices !== 2 || second.outbox !== 0 || second.inbox !== 2) throw new Error(`after the zod 3.25 run the database holds ${JSON.stringify(second)}`);
      say(`zod ${ZOD3}: 'zod/v4' type-checks and runs (database ${JSON.stringify(second)}); plain 'zod' (the v3 API) ${v3.status === 0 ? 'type-checks too' : 'does not type-check'}`);
    } finally {
      await db.end();
    }
    ok = true;
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch((error) => say(`could not drop database ${database}: ${error.message}`));
    await admin.end();
    if (vhostMade) spawnSync('rabbitmqctl', ['delete_vhost', vhost], { stdio: 'ignore' });
    if (ok && process.env.FIRST_LOOK_KEEP !== '1') rmSync(work, { recursive: true, force: true });
    else say(`the project is kept in ${work}`);
  }
  say('passed');
}

main().catch((error) => {
  console.error(`first-look: FAILED: ${error.stack ?? error}`);
  process.exitCode = 1;
});
