import type pg from 'pg';
import type { PgPoolClientLike } from '@mailroom/core';
import { PartitionLease } from './partition-lease.js';
import { ConfirmPublisher } from './publisher.js';
import { runBatch } from './relay-batch.js';
import { backOffAfterFailure, channelOrStop, type RelayRuntime } from './relay-runtime.js';

/**
 * The one loop of a relay in ordering mode. It keeps one connection for its whole life, because
 * the partition leases are session advisory locks on it; it rebalances the leases every
 * heartbeat and claims only rows of the partitions it holds. When anything fails, the
 * connection (and every lease with it) is dropped and the loop joins again on a new one.
 * `onLease` reports the current lease (undefined when none), for `leasedPartitions()`.
 */
export async function runOrderedLoop(runtime: RelayRuntime, onLease: (lease: PartitionLease | undefined) => void): Promise<void> {
  const { options, pool, wake } = runtime;
  const publisher = new ConfirmPublisher(runtime.amqp, { declareExchanges: options.declareExchanges, logger: runtime.log });
  let failures = 0;
  let client: PgPoolClientLike | undefined;
  let lease: PartitionLease | undefined;
  let lastRebalance = 0;
  const drop = (): void => {
    lease?.lost();
    lease = undefined;
    onLease(undefined);
    client?.release(true);
    client = undefined;
  };
  while (!wake.signal.aborted) {
    try {
      const channel = await channelOrStop(runtime, publisher);
      if (channel === undefined) break;
      if (client === undefined || lease === undefined) {
        client = await pool.connect();
        // Errors of an idle session surface on its next query; unhandled they would crash the process.
        (client as unknown as pg.PoolClient).on('error', () => undefined);
        lease = new PartitionLease(client, options.schema, options.partitions, Math.max(10_000, options.leaseHeartbeatMs * 10));
        onLease(lease);
        await lease.join();
        lastRebalance = 0;
      }
      if (Date.now() - lastRebalance >= options.leaseHeartbeatMs) {
        await lease.rebalance();
        lastRebalance = Date.now();
      }
      const held = lease.held;
      const claimed = held.length > 0 ? await runBatch(runtime, client, publisher, held) : 0;
      runtime.setHealthy(true);
      failures = 0;
      if (claimed < options.batchSize) await wake.idle(Math.min(options.pollIntervalMs, options.leaseHeartbeatMs));
    } catch (error) {
      failures++;
      runtime.failure('ordered batch', error);
      // The session may be gone and its leases with it: start over on a new connection.
      drop();
      await backOffAfterFailure(runtime, failures);
    }
  }
  drop();
  await publisher.close();
}
