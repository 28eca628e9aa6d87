// Types of reconcile.mjs, for the TypeScript tests.
interface Queryable {
  query: (text: string) => Promise<{ rows: object[] }>;
}

export interface ReconcileDifference {
  id: string;
  kind: 'missing' | 'extra' | 'differs';
  field?: string;
  monolith?: unknown;
  usersService?: unknown;
}

export interface Reconciliation {
  monolith: number;
  usersService: number;
  differences: ReconcileDifference[];
}

export function reconcileUsers(monolithDb: Queryable, usersDb: Queryable): Promise<Reconciliation>;
export function formatReconciliation(result: Reconciliation, limit?: number): string[];
