// The strangler fig's reconciliation (examples/strangler-fig/src/reconcile.mjs) on the cases the
// story does not reach: a user missing on one side, one only on the other, several fields at
// once, and text that must not break the report's lines.
import { describe, expect, it } from 'vitest';
import { formatReconciliation, reconcileUsers } from '../../strangler-fig/src/reconcile.mjs';

interface Row {
  id: string;
  email: string;
  name: string;
  country: string;
  version: number;
}

// The two queries answered from memory: the comparison is the unit here, not SQL.
const table = (rows: Row[]): { query: () => Promise<{ rows: Row[] }> } => ({ query: () => Promise.resolve({ rows }) });
const user = (id: string, over: Partial<Row> = {}): Row => ({ id, email: `${id}@example.org`, name: 'Ada Lovelace', country: 'GB', version: 1, ...over });

describe('strangler fig: the reconciliation', () => {
  it('says nothing differs when both sides agree', async () => {
    const result = await reconcileUsers(table([user('a'), user('b')]), table([user('a'), user('b')]));
    expect(result).toEqual({ monolith: 2, usersService: 2, differences: [] });
    expect(formatReconciliation(result)).toEqual(['2 users in the monolith, 2 in the users service: nothing differs']);
  });

  it('reports missing, extra and every differing field', async () => {
    const result = await reconcileUsers(
      table([user('a', { email: 'new@example.org', version: 3 }), user('b')]),
      table([user('a', { version: 2 }), user('c')]),
    );
    expect(result.differences).toEqual([
      { id: 'a', kind: 'differs', field: 'email', monolith: 'new@example.org', usersService: 'a@example.org' },
      { id: 'a', kind: 'differs', field: 'version', monolith: 3, usersService: 2 },
      { id: 'b', kind: 'missing' },
      { id: 'c', kind: 'extra' },
    ]);
    const lines = formatReconciliation(result);
    expect(lines.at(-1)).toBe('2 users in the monolith, 2 in the users service: 4 difference(s)');
    expect(lines).toContain('missing  user b  in the monolith, not in the users service');
    expect(lines).toContain('extra    user c  in the users service, not in the monolith');
  });

  it('keeps one line per difference when values hold newlines or escapes, and cuts at the limit', async () => {
    const result = await reconcileUsers(table([user('a', { name: 'Ada\nLovelace\u001b[2J' }), user('b'), user('d')]), table([user('a'), user('c')]));
    const lines = formatReconciliation(result, 2);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe('differs  user a  name: monolith "Ada\\nLovelace\\u001b[2J" · users service "Ada Lovelace"');
    expect(lines[2]).toBe('… and 2 more');
    for (const line of lines) expect(line).not.toMatch(/[\n\u001b]/);
  });
});
