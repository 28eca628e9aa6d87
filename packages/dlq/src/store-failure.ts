/**
 * Why storing a dead letter failed. `environment`: the database is away or refuses the sink
 * itself (connection lost, shutting down, out of resources, read-only after a failover, no
 * privilege, table missing): any dead letter would fail the same way, so the sink waits and tries
 * again. `content`: this row is refused (a data exception, a constraint, a limit): the sink
 * stores a smaller form, then parks it.
 */
export type StoreFailureCause = 'environment' | 'content';

// SQLSTATE classes that say nothing about the row: connection (08), transaction state (25),
// authorization (28), 3D (no database), 40 (serialization, deadlock: retry), 53 (resources),
// 55 (object in use, lock not available), 57 (operator intervention: shutdown, cancel), 58
// (system), F0 (configuration), XX (internal), and class 42 (no privilege, no table or
// column: a schema not migrated or a grant missing).
const ENVIRONMENT_CLASSES = new Set(['08', '25', '28', '3D', '40', '42', '53', '55', '57', '58', 'F0', 'XX']);
// Node's socket errors (ECONNREFUSED, EPIPE, …) and pg's own messages for a lost connection.
const LOST_CONNECTION = /connect|terminat|timeout|timed out|not queryable|closed|socket|ECONN|EPIPE|ENOTFOUND|EAI_AGAIN/i;

/** Classifies an error of a store attempt (a pg `DatabaseError` carries `severity` and a SQLSTATE `code`). */
export function storeFailureCause(error: unknown): StoreFailureCause {
  if (typeof error !== 'object' || error === null) return 'content';
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  if (typeof severity === 'string' && typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    return ENVIRONMENT_CLASSES.has(code.slice(0, 2)) ? 'environment' : 'content';
  }
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return 'environment';
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && LOST_CONNECTION.test(message) ? 'environment' : 'content';
}
