// setup and verify for the balance fixtures: one balance per key, which must equal the number
// of committed events of that key.
import type { ChaosDbContext, ChaosOptions } from '@mailroom/chaos';

export function balanceChecks(keys: number): Pick<ChaosOptions, 'setup' | 'verify' | 'keys'> {
  return {
    keys,
    async setup({ query, schema }: ChaosDbContext) {
      await query(`CREATE TABLE "${schema}".balances (key text PRIMARY KEY, applied integer NOT NULL DEFAULT 0)`);
      await query(`INSERT INTO "${schema}".balances (key) SELECT 'k' || i FROM generate_series(0, $1::int - 1) AS i`, [keys]);
    },
    async verify({ query, schema, committed }) {
      const expected = new Map<string, number>();
      for (const e of committed) expected.set(e.key, (expected.get(e.key) ?? 0) + 1);
      const { rows } = await query<{ key: string; applied: number }>(`SELECT key, applied FROM "${schema}".balances`);
      return rows
        .filter((r) => r.applied !== (expected.get(r.key) ?? 0))
        .map((r) => `balance ${r.key}: applied ${r.applied} times, ${expected.get(r.key) ?? 0} events committed`);
    },
  };
}
