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
  'hostile-headers',
  'hostile-nul',
  'forged-retry',
  'forged-dead-letter',
  'deep-json',
  'conflicting-duplicate',
  'unpublishable-row',
  'restart-postgres',
  'restart-rabbitmq',
  'kill-broker-node',
  'stop-broker-app',
] as const;

/** One kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * The hostile inputs: deliveries with oversized or near-limit headers, NUL bytes, forged retry
 * state or dead letters, deep JSON, conflicting duplicates, and outbox rows no relay can publish.
 */
export const HOSTILE_FAULTS: readonly FaultKind[] = [
  'hostile-headers',
  'hostile-nul',
  'forged-retry',
  'forged-dead-letter',
  'deep-json',
  'conflicting-duplicate',
  'unpublishable-row',
];

/** The faults on the processes themselves: CI runs all of them. */
export const PROCESS_FAULTS: readonly FaultKind[] = ['kill-relay', 'kill-consumer', 'pause-relay', 'pause-consumer', 'crash-relay', 'crash-consumer'];

/**
 * The broker node faults (a cluster only, see `cluster`): kill -9 one node's VM then start it
 * again, or `rabbitmqctl stop_app` then `start_app` on one node; never more than one node down.
 */
export const BROKER_NODE_FAULTS: readonly FaultKind[] = ['kill-broker-node', 'stop-broker-app'];

/** The default fault set: everything but the service restarts and the broker node faults (they need a cluster). */
export const DEFAULT_FAULTS: readonly FaultKind[] = FAULT_KINDS.filter((k) => k !== 'restart-postgres' && k !== 'restart-rabbitmq' && !BROKER_NODE_FAULTS.includes(k));

/**
 * The default faults on a cluster: the process faults, the PostgreSQL faults, the AMQP link
 * faults (on every node's link at once), duplicates, and the broker node faults. The other
 * injected messages are left out: they publish through one admin connection and say nothing
 * about the cluster (they run on a single broker).
 */
export const CLUSTER_FAULTS: readonly FaultKind[] = [...PROCESS_FAULTS, 'terminate-backends', 'pg-reset', 'amqp-reset', 'latency', 'blackhole', 'bandwidth', 'duplicate', ...BROKER_NODE_FAULTS];

/**
 * The faults of the saga workload (the default there): the process and link faults and the
 * backend terminations. The injected messages are the events workload's (they carry its
 * contract); the saga workload's own duplicates come from the crashes and kills.
 */
export const SAGA_FAULTS: readonly FaultKind[] = [...PROCESS_FAULTS, 'terminate-backends', 'amqp-reset', 'pg-reset', 'latency', 'blackhole', 'bandwidth'];
