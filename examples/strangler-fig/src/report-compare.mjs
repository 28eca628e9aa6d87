// The reporting projection as rows, and a row-for-row comparison of two of them (the one built
// live and the one rebuilt from history), or of one with the truth in the monolith's tables.

const PROJECTION = `SELECT u.user_id::text AS user_id, u.country, u.version, count(o.order_id)::int AS orders, coalesce(sum(o.amount), 0)::text AS amount
  FROM report_users u LEFT JOIN report_orders o ON o.user_id = u.user_id
  GROUP BY u.user_id, u.country, u.version ORDER BY u.user_id`;

const TRUTH = `SELECT u.id::text AS user_id, u.country, u.version, count(o.id)::int AS orders, coalesce(sum(o.amount), 0)::text AS amount
  FROM users u LEFT JOIN orders o ON o.user_id = u.id
  GROUP BY u.id, u.country, u.version ORDER BY u.id`;

/**
 * One row per user: `{ user_id, country, version, orders, amount }`, ordered by user id. With
 * `monolith: true`, the same rows computed from the monolith's own users and orders tables.
 *
 * @param {{ query: (text: string) => Promise<{ rows: object[] }> }} db
 */
export async function projectionRows(db, { monolith = false } = {}) {
  return (await db.query(monolith ? TRUTH : PROJECTION)).rows;
}

/** The rows that differ between two projections (by position, both ordered by user id): `[]` when they match row for row. */
export function diffProjections(left, right) {
  const differences = [];
  const n = Math.max(left.length, right.length);
  for (let i = 0; i < n; i += 1) {
    if (JSON.stringify(left[i]) !== JSON.stringify(right[i])) differences.push({ left: left[i] ?? null, right: right[i] ?? null });
  }
  return differences;
}

/** Users per country, `{ DE: 12, … }`, from projection rows. */
export function perCountry(rows) {
  const counts = {};
  for (const r of rows) counts[r.country] = (counts[r.country] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}
