// A terminated backend or a reset link is waited out or fails one call: it never throws an
// unhandled 'error' at the process, and start-up queries retry it while permanent errors do not.
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { inTransaction, isTransientDatabaseError, retryTransient } from '@mailroom/core/internal';
import { testUrls } from '../../../test/helpers.js';

const admin = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 2 });
admin.on('error', () => undefined);

afterAll(async () => {
  await admin.end();
});

describe('a connection that dies', () => {
  it('fails the transaction it was in, and the process lives on (no unhandled error event)', async () => {
    const appName = `mr_tx_${process.pid}_${Date.now()}`;
    const pool = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 2, application_name: appName });
    pool.on('error', () => undefined);
    try {
      const outcome = await inTransaction(pool, async (tx) => {
        await tx.query('SELECT 1');
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [appName]);
        // The termination arrives while no query runs: pg emits 'error' on the idle, checked-out client.
        await new Promise((resolve) => setTimeout(resolve, 200));
        await tx.query('SELECT 1');
      }).then(
        () => 'committed',
        (error: unknown) => error,
      );
      expect(outcome).toBeInstanceOf(Error);
      // The pool is usable again: the broken client was destroyed, not handed out again.
      expect((await pool.query('SELECT 2 AS two')).rows[0]).toEqual({ two: 2 });
    } finally {
      await pool.end();
    }
  });
});

describe('retryTransient', () => {
  it('retries terminated backends and resets, and only those', async () => {
    const terminated = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    let calls = 0;
    const value = await retryTransient(async () => {
      calls++;
      if (calls === 1) throw terminated;
      if (calls === 2) throw reset;
      return 'ok';
    });
    expect([value, calls]).toEqual(['ok', 3]);

    const missing = Object.assign(new Error('relation "x" does not exist'), { code: '42P01' });
    let permanentCalls = 0;
    await expect(
      retryTransient(async () => {
        permanentCalls++;
        throw missing;
      }),
    ).rejects.toBe(missing);
    expect(permanentCalls).toBe(1);
    expect(isTransientDatabaseError(Object.assign(new Error('password authentication failed'), { code: '28P01' }))).toBe(false);
    expect(isTransientDatabaseError(new Error('wrapped', { cause: reset }))).toBe(true);
  });

  it('keeps a process with nothing else to do alive while it waits (a start() in a sidecar)', () => {
    // On an unref'd timer the event loop empties and Node exits 13 ("unsettled top-level await").
    const internal = pathToFileURL(fileURLToPath(new URL('../dist/internal.js', import.meta.url))).href;
    const script = `import { retryTransient } from ${JSON.stringify(internal)};
      let n = 0;
      await retryTransient(async () => { if (n++ < 2) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }); });
      console.log('started after', n);`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect({ status: run.status, out: run.stdout.trim() }).toEqual({ status: 0, out: 'started after 3' });
  });

  it('gives up after its window', async () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const started = Date.now();
    await expect(retryTransient(() => Promise.reject(reset), { withinMs: 300 })).rejects.toBe(reset);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
