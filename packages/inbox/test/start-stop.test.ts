// stop() while start() still waits for the database (a SIGTERM to a consumer process whose
// database link resets, its pool ended on the way out): start() settles without an error instead
// of failing on the ended pool — a rejected top-level start() exits the process 1 (found by the
// chaos harness, seed 90211).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConsumer, handler } from '@mailroom/inbox';
import { defineMessage } from '@mailroom/core';
import { z } from 'zod';
import { startResettingServer, testUrls } from '../../../test/helpers.js';

describe('consumer stop() during start()', () => {
  let resetting: Awaited<ReturnType<typeof startResettingServer>>;
  let port: number;

  beforeAll(async () => {
    resetting = await startResettingServer();
    port = resetting.port;
  });

  afterAll(async () => {
    await resetting.close();
  });

  it('lets start() settle quietly when stop() and the end of the pool come first', async () => {
    const pool = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${port}/test` });
    pool.on('error', () => undefined);
    const Ping = defineMessage('start-stop.ping', z.object({}));
    const consumer = createConsumer({ name: 'start-stop', db: pool, amqp: testUrls().amqpUrl, handlers: [handler(Ping, async () => undefined)] });
    const started = consumer.start().then(
      () => 'resolved',
      (error: unknown) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    await consumer.stop();
    await pool.end();
    expect(await started).toBe('resolved');
  });
});
