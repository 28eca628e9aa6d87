// A relay in its own process, started by the chaos harness (node dist/worker-relay.js).
import { createConsoleLogger } from '@mailroom/core';
import { createRelay } from '@mailroom/outbox';
import { need, needInt, report } from './worker-env.js';

const name = need('CHAOS_NAME');
const relay = createRelay({
  database: need('CHAOS_DATABASE_URL'),
  // Several URLs (a cluster's nodes, comma-separated): the relay fails over between them.
  amqp: need('CHAOS_AMQP_URL').split(','),
  schema: need('CHAOS_SCHEMA'),
  ordering: need('CHAOS_ORDERING') === 'true',
  batchSize: needInt('CHAOS_BATCH_SIZE'),
  concurrency: 2,
  pollIntervalMs: 500,
  publishTimeoutMs: 3000,
  retryInitialDelayMs: 100,
  retryMaxDelayMs: 2000,
  partitions: 16,
  leaseHeartbeatMs: 300,
  shutdownTimeoutMs: 3000,
  name,
  logger: createConsoleLogger({ level: 'warn', name }),
});
process.once('SIGTERM', () => {
  void relay.stop().finally(() => process.exit(0));
});
await relay.start();
report('ready', { pid: process.pid });
