/** Every fault the nemesis knows. The last two restart shared services: only when allowed. */
export const FAULT_KINDS = [
  'kill-relay',
  'kill-consumer',
  'pause-relay',
  'pause-consumer',
  'crash-relay',
  'crash-consumer',
  'terminate-backends',
  'amqp-reset',
  'pg-reset',
  'latency',
  'blackhole',
  'bandwidth',
  'duplicate',
  'poison',
  'restart-postgres',
  'restart-rabbitmq',
] as const;

/** One kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** The faults on the processes themselves: CI runs all of them. */
export const PROCESS_FAULTS: readonly FaultKind[] = ['kill-relay', 'kill-consumer', 'pause-relay', 'pause-consumer', 'crash-relay', 'crash-consumer'];

/** The default fault set: everything but the service restarts. */
export const DEFAULT_FAULTS: readonly FaultKind[] = FAULT_KINDS.filter((k) => k !== 'restart-postgres' && k !== 'restart-rabbitmq');

/** What `setup` and `verify` get: a query function on the run's database (not through the fault proxy) and its schema. */
export interface ChaosDbContext {
  query: <R extends Record<string, unknown> = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<{ rows: R[] }>;
  /** The run's schema: mailroom's tables, the workload's and yours. */
  schema: string;
}

/** Options of `runChaos`. Only the two URLs are required. */
export interface ChaosOptions {
  /** PostgreSQL URL; the role must be allowed to `pg_terminate_backend` mailroom's sessions. */
  databaseUrl: string;
  /** RabbitMQ URL. */
  amqpUrl: string;
  /** Seed of the fault schedule and the workload's choices. Default: random (printed in the report). */
  seed?: number;
  /** How long the workload and the nemesis run, in ms (the heal, drain and quiet period follow). Default: 60000. */
  durationMs?: number;
  /** Relay processes. Default: 2. */
  relays?: number;
  /** Consumer processes. Default: 2 (1 with `ordering`, since several consumers do not pin keys). */
  consumers?: number;
  /** Producer workers (in the harness's process). Default: 3. */
  producers?: number;
  /** Distinct keys of the events. Default: 16. */
  keys?: number;
  /** Producer transactions per second, all workers together. Default: 40. */
  transactionsPerSecond?: number;
  /** Largest number of events per transaction (each on its own key). Default: 3. */
  maxEventsPerTransaction?: number;
  /** Share of producer transactions rolled back after their enqueue. Default: 0.1. */
  rollbackRate?: number;
  /**
   * Share of producer transactions that wait 50–800 ms between their enqueue and COMMIT, so
   * rows commit out of id order (the sequence-gap trap of a relay cursor). Default: 0.1.
   */
  slowCommitRate?: number;
  /** Share of handler runs that throw a transient error (retried). Default: 0.02, and 0 with `ordering`. */
  handlerFailureRate?: number;
  /** Per-key order: relays and the consumer in ordering mode, and the checker looks for reorders. Default: false. */
  ordering?: boolean;
  /** Fault kinds to inject, in a seeded shuffled round robin. Default: all but the service restarts. */
  faults?: readonly FaultKind[];
  /** Mean gap between two faults, in ms. Default: 1500. */
  faultIntervalMs?: number;
  /** Fault streams running at once, each on its own seeded schedule (faults then overlap). Default: 1. */
  faultConcurrency?: number;
  /**
   * Shell commands that restart PostgreSQL or RabbitMQ. Required for the `restart-*` faults,
   * which affect everything else on that server: use them on a machine of your own.
   */
  serviceRestarts?: { postgres?: string; rabbitmq?: string };
  /**
   * A module your handler lives in: it exports `effect(context)` (a `ChaosEffect`), run in the
   * consumer's transaction before the harness's ledger row. A path or a file URL; `.js`/`.mjs`,
   * or `.ts` with erasable syntax only (Node strips the types).
   */
  handlerModule?: string;
  /**
   * Runs once before the workload, after mailroom's migrations: create the tables your handler
   * writes to, in `schema` (the run's own schema, dropped afterwards unless `keep`).
   */
  setup?: (context: ChaosDbContext) => Promise<void>;
  /**
   * Runs after the drain, when every process stopped: compare your own tables with the committed
   * events and return a problem per disagreement (a double effect your handler applied, say).
   * Any problem makes the run invalid.
   */
  verify?: (context: ChaosDbContext & { committed: ReadonlyArray<{ eventId: string; key: string; seq: number }> }) => Promise<string[]>;
  /** How long the drain may take before the remaining events count as stuck, in ms. Default: 60000. */
  drainTimeoutMs?: number;
  /** How long nothing may change after the drain before the final reads, in ms. Default: 2000. */
  quietMs?: number;
  /** Writes the history here as JSONL. Default: memory only. */
  historyPath?: string;
  /** Keep the schema and the broker objects after the run, for a look. Default: false. */
  keep?: boolean;
  /** Ends the workload phase early when aborted; the heal, drain and check still run. */
  signal?: AbortSignal;
  /** Progress lines (phases, faults); default: silent. */
  log?: (line: string) => void;
}
