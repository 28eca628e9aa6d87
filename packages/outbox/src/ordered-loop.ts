import { LinkFailure } from './link-health.js';
import { PartitionLease } from './partition-lease.js';
import type { CheckedOutClient } from '@mailroom/core/internal';
import { ConfirmPublisher } from './publisher.js';
import { runBatch } from './relay-batch.js';
import { backOffAfterFailure, channelOrStop, type RelayRuntime } from './relay-runtime.js';

/**
 * The one loop of a relay in ordering mode. It keeps one connection for its whole life, because
 * the partition leases are session advisory locks on it; it rebalances the leases every
 * heartbeat and claims only rows of the partitions it holds. When anything fails, the
 * connection (and every lease with it) is dropped and the loop joins again on a new one. The
 * connection has an `'error'` listener for as long as the loop holds it. `onLease` reports the
 * current lease (undefined when none), for `leasedPartitions()`. Never rejects.
 */
export async function runOrderedLoop(runtime: RelayRuntime, onLease: (lease: PartitionLease | undefined) => void): Promise<void> {
  const { options, wake } = runtime;
  const publisher = new ConfirmPublisher(runtime.amqp, { declareExchanges: options.declareExchanges, logger: runtime.log });
  let failures = 0;
  // Counted as busy until it waits: the last busy worker registers the relay as asleep.
  wake.enter();
  let held: CheckedOutClient | undefined;
  let lease: PartitionLease | undefined;
  let lastRebalance = 0;
  const drop = (): void => {
    lease?.lost();
    lease = undefined;
    onLease(undefined);
    held?.release(true);
    held = undefined;
  };
  while (!wake.signal.aborted) {
    try {
      const channel = await channelOrStop(runtime, publisher);
      if (channel === undefined) break;
      try {
        if (held === undefined || lease === undefined || held.broken) {
          drop();
          held = await runtime.checkOut();
          lease = new PartitionLease(held.client, options.schema, options.partitions, Math.max(10_000, options.leaseHeartbeatMs * 10));
          onLease(lease);
          await lease.join();
          lastRebalance = 0;
        }
        if (Date.now() - lastRebalance >= options.leaseHeartbeatMs) {
          await lease.rebalance();
          lastRebalance = Date.now();
        }
      } catch (error) {
        throw new LinkFailure('postgres', error);
      }
      const partitions = lease.held;
      const claimed = partitions.length > 0 ? await runBatch(runtime, held.client, publisher, partitions) : 0;
      runtime.linkUp('postgres');
      failures = 0;
      if (claimed < options.batchSize) await wake.idle(Math.min(options.pollIntervalMs, options.leaseHeartbeatMs), claimed);
    } catch (error) {
      failures++;
      runtime.batchFailed('ordered batch', error);
      // The session may be gone and its leases with it: start over on a new connection.
      drop();
      await backOffAfterFailure(runtime, failures);
    }
  }
  drop();
  wake.leave();
  await publisher.close();
}
