import { ConfirmPublisher } from './publisher.js';
import { runBatch } from './relay-batch.js';
import { backOffAfterFailure, channelOrStop, type RelayRuntime } from './relay-runtime.js';

/**
 * One worker of a relay without ordering: claims whatever is due (other workers' rows are
 * skipped), a batch after the other, on a connection borrowed per batch and a confirm channel of
 * its own. A full batch is followed at once by the next; otherwise it waits for a wake-up.
 * Resolves at stop, after the batch in flight.
 */
export async function runUnorderedLoop(runtime: RelayRuntime, worker: number): Promise<void> {
  const { options, pool, wake } = runtime;
  const publisher = new ConfirmPublisher(runtime.amqp, { declareExchanges: options.declareExchanges, logger: runtime.log });
  let failures = 0;
  while (!wake.signal.aborted) {
    try {
      const channel = await channelOrStop(runtime, publisher);
      if (channel === undefined) break;
      const client = await pool.connect();
      let claimed: number;
      try {
        claimed = await runBatch(runtime, client, publisher, undefined);
        client.release();
      } catch (error) {
        // The session may be in any state: never hand it back to the pool.
        client.release(true);
        throw error;
      }
      runtime.setHealthy(true);
      failures = 0;
      if (claimed < options.batchSize) await wake.idle(options.pollIntervalMs);
    } catch (error) {
      failures++;
      runtime.failure(`batch (worker ${worker})`, error);
      await backOffAfterFailure(runtime, failures);
    }
  }
  await publisher.close();
}
