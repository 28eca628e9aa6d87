import { DEFAULT_SCHEMA, type Counter, type MetricsRegistry, type Queryable } from '@mailroom/core';
import { toExecutor } from '@mailroom/core/internal';
import { sagaTables } from './saga-sql.js';

/** What a step did with a message, as `mailroom_saga_steps_total` counts it. */
export type SagaStepOutcome = 'started' | 'applied' | 'completed' | 'failed' | 'ignored' | 'duplicate';

/**
 * `mailroom_saga_steps_total{saga,type,outcome}`, counted when a step returns (a transaction that
 * then fails to commit is counted again when its message is retried).
 */
export function sagaStepCounter(registry: MetricsRegistry): Counter {
  return registry.counter(
    'mailroom_saga_steps_total',
    'Saga steps by outcome: started, applied, completed, failed, ignored (the instance had ended), duplicate (applied before through another consumer).',
    ['saga', 'type', 'outcome'],
  );
}

/** Options of {@link sagaMetrics}. */
export interface SagaMetricsOptions {
  /** A pg Pool (or kysely instance) the gauge queries when the registry renders. */
  db: Queryable;
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
}

/**
 * Registers the gauge `mailroom_saga_instances{saga,status}` (instances by saga and status, read
 * from the database at each render, by an index-only scan) in `registry`. A query that fails leaves
 * the gauge empty for that scrape. Call it once per registry; later calls change nothing.
 */
export function sagaMetrics(registry: MetricsRegistry, options: SagaMetricsOptions): void {
  const { sagas } = sagaTables(options.schema ?? DEFAULT_SCHEMA);
  const db = toExecutor(options.db);
  registry.gauge(
    'mailroom_saga_instances',
    'Saga instances by saga and status (running, completed, failed); ended ones until cleanupSagas removes them.',
    async () => {
      const result = await db.query<{ saga: string; status: string; n: string }>(
        `SELECT saga, status, pg_catalog.count(*)::pg_catalog.int8 AS n FROM ${sagas} GROUP BY saga, status`,
      );
      return result.rows.map((r) => ({ labels: { saga: r.saga, status: r.status }, value: Number(r.n) }));
    },
    ['saga', 'status'],
  );
}
