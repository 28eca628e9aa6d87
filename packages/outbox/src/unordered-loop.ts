import { LinkFailure } from './link-health.js';
import type { CheckedOutClient } from '@mailroom/core/internal';
import { ConfirmPublisher } from './publisher.js';
import { runBatch } from './relay-batch.js';
import { backOffAfterFailure, channelOrStop, type RelayRuntime } from './relay-runtime.js';

/**
 * One worker of a relay without ordering: claims whatever is due (other workers' rows are
 * skipped), a batch after the other, on a connection borrowed per batch (with an `'error'`
 * listener for as long as it is out: a backend PostgreSQL terminates fails the batch, never the
 * process) and a confirm channel of its own. A full batch is followed at once by the next (and
 * wakes one more worker); otherwise it waits for a wake-up (wake-up.ts decides when), and then
 * `lingerMs` more, so that what commits meanwhile shares the next batch. Resolves at
 * stop, after the batch in flight; never rejects.
 */
export async function runUnorderedLoop(runtime: RelayRuntime, worker: number): Promise<void> {
  const { options, wake } = runtime;
  const publisher = new ConfirmPublisher(runtime.amqp, { declareExchanges: options.declareExchanges, logger: runtime.log });
  let failures = 0;
  // Counted as busy until it waits: the last busy worker registers the relay as asleep.
  wake.enter();
  while (!wake.signal.aborted) {
    try {
      const channel = await channelOrStop(runtime, publisher);
      if (channel === undefined) break;
      let lease: CheckedOutClient;
      try {
        lease = await runtime.checkOut();
      } catch (error) {
        throw new LinkFailure('postgres', error);
      }
      let claimed: number;
      try {
        claimed = await runBatch(runtime, lease.client, publisher, undefined);
        lease.release();
      } catch (error) {
        // The session may be in any state: never hand it back to the pool.
        lease.release(true);
        throw error;
      }
      runtime.linkUp('postgres');
      failures = 0;
      // A full batch: go on at once, and let one more worker help.
      if (claimed >= options.batchSize) wake.join();
      else {
        await wake.idle(options.pollIntervalMs, claimed);
        // Linger: let the events of the next few ms gather into the next batch (lingerMs, default 0).
        if (options.lingerMs > 0) await wake.pause(options.lingerMs);
      }
    } catch (error) {
      failures++;
      runtime.batchFailed(`batch (worker ${worker})`, error);
      await backOffAfterFailure(runtime, failures);
    }
  }
  wake.leave();
  await publisher.close();
}
