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

/** The default fault set: everything but the service restarts. */
export const DEFAULT_FAULTS: readonly FaultKind[] = FAULT_KINDS.filter((k) => k !== 'restart-postgres' && k !== 'restart-rabbitmq');
