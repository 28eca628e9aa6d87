// stop() while start() still waits for the database (a SIGTERM to a sidecar whose database link
// resets): start() must settle without an error instead of failing on the pool stop() ended —
// a rejected top-level start() exits the process 1 (found by the chaos harness, seed 90212).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRelay } from '@mailroom/outbox';
import { startResettingServer, testUrls } from '../../../test/helpers.js';

describe('stop() during start()', () => {
  let resetting: Awaited<ReturnType<typeof startResettingServer>>;
  let port: number;

  beforeAll(async () => {
    resetting = await startResettingServer();
    port = resetting.port;
  });

  afterAll(async () => {
    await resetting.close();
  });

  it('lets start() settle quietly and stop() resolve', async () => {
    const relay = createRelay({ database: `postgres://postgres@127.0.0.1:${port}/test`, amqp: testUrls().amqpUrl, name: 'start-stop' });
    const started = relay.start().then(
      () => 'resolved',
      (error: unknown) => error,
    );
    // start() is waiting out the resets.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await relay.stop();
    expect(await started).toBe('resolved');
    expect(relay.ready).toBe(false);
  });
});
