// The reconciliation check of the extraction: the monolith's users table against the users
// service's, user by user and field by field. It reads both databases (the one place in this
// story that reads two services' tables: an operator's tool, not a service). Run it alone:
//
//   node src/reconcile.mjs <monolith database URL> <users service database URL>
//
// It prints one line per difference and a verdict, and exits 0 when nothing differs, 1 otherwise.
import { pathToFileURL } from 'node:url';
import pg from 'pg';

const FIELDS = ['email', 'name', 'country', 'version'];

/**
 * Compares the two users tables. Returns `{ monolith, usersService, differences }`: the row
 * counts, and one entry per difference: `{ id, kind: 'missing' | 'extra' | 'differs', field?,
 * monolith?, usersService? }` (missing: only in the monolith; extra: only in the users service).
 * The users service's name is its given and family name joined, as the monolith stores it.
 * Both tables are read whole: fine for a demo; a real one compares id ranges page by page.
 *
 * @param {{ query: (text: string) => Promise<{ rows: object[] }> }} monolithDb
 * @param {{ query: (text: string) => Promise<{ rows: object[] }> }} usersDb
 */
export async function reconcileUsers(monolithDb, usersDb) {
  const [{ rows: left }, { rows: right }] = await Promise.all([
    monolithDb.query('SELECT id, email, name, country, version FROM users ORDER BY id'),
    usersDb.query("SELECT id, email, trim(coalesce(given_name, '') || ' ' || coalesce(family_name, '')) AS name, country, version FROM users ORDER BY id"),
  ]);
  const theirs = new Map(right.map((r) => [r.id, r]));
  const differences = [];
  for (const mine of left) {
    const other = theirs.get(mine.id);
    theirs.delete(mine.id);
    if (!other) {
      differences.push({ id: mine.id, kind: 'missing' });
      continue;
    }
    for (const field of FIELDS) {
      if (mine[field] !== other[field]) differences.push({ id: mine.id, kind: 'differs', field, monolith: mine[field], usersService: other[field] });
    }
  }
  for (const id of theirs.keys()) differences.push({ id, kind: 'extra' });
  return { monolith: left.length, usersService: right.length, differences };
}

/** The report as lines of text: one per difference (at most `limit`), then the verdict. */
export function formatReconciliation({ monolith, usersService, differences }, limit = 10) {
  const lines = differences.slice(0, limit).map((d) =>
    d.kind === 'differs'
      ? `differs  user ${d.id}  ${d.field}: monolith ${JSON.stringify(d.monolith)} · users service ${JSON.stringify(d.usersService)}`
      : d.kind === 'missing'
        ? `missing  user ${d.id}  in the monolith, not in the users service`
        : `extra    user ${d.id}  in the users service, not in the monolith`,
  );
  if (differences.length > limit) lines.push(`… and ${differences.length - limit} more`);
  lines.push(
    differences.length === 0
      ? `${monolith} users in the monolith, ${usersService} in the users service: nothing differs`
      : `${monolith} users in the monolith, ${usersService} in the users service: ${differences.length} difference(s)`,
  );
  return lines;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [monolithUrl, usersUrl] = process.argv.slice(2);
  if (!monolithUrl || !usersUrl) {
    console.error('usage: node src/reconcile.mjs <monolith database URL> <users service database URL>');
    process.exit(2);
  }
  const monolithDb = new pg.Client({ connectionString: monolithUrl });
  const usersDb = new pg.Client({ connectionString: usersUrl });
  await Promise.all([monolithDb.connect(), usersDb.connect()]);
  try {
    const result = await reconcileUsers(monolithDb, usersDb);
    for (const line of formatReconciliation(result, Infinity)) console.log(line);
    process.exitCode = result.differences.length === 0 ? 0 : 1;
  } finally {
    await Promise.all([monolithDb.end(), usersDb.end()]);
  }
}
