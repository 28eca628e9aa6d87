// Issue 9, defect 7 (consumer side): cleanupInbox computed its cutoff with an unqualified
// `bigint * interval`, so a schema earlier in the connection's search_path could plant its own
// operator (here: one that moves the cutoff a century into the future, deleting every row). Every
// built-in the inbox calls is now schema-qualified; a hostile search_path changes nothing.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { cleanupInbox } from '@mailroom/inbox';
import { testUrls } from '../../../test/helpers.js';
import { WAIT, consumerFor, effects, publish, recordEffect, setupEnv, type Env } from './support.js';

let env: Env;
let planted: pg.Pool;
let hostile: pg.Pool;
let trap: string;
beforeAll(async () => {
  env = await setupEnv();
  trap = `${env.db.schema}_trap`;
  // The planted objects log each call, so the test can show none of them ran.
  await env.db.pool.query(`
    CREATE SCHEMA "${trap}";
    CREATE TABLE "${trap}".calls (what text NOT NULL);
    CREATE FUNCTION "${trap}".mul(bigint, interval) RETURNS interval LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO "${trap}".calls VALUES ('bigint * interval'); RETURN interval '-100 years'; END $$;
    CREATE OPERATOR "${trap}".* (LEFTARG = bigint, RIGHTARG = interval, FUNCTION = "${trap}".mul);
    CREATE FUNCTION "${trap}".lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO "${trap}".calls VALUES ('timestamptz < timestamptz'); RETURN true; END $$;
    CREATE OPERATOR "${trap}".< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = "${trap}".lt);
    CREATE FUNCTION "${trap}".eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO "${trap}".calls VALUES ('text = text'); RETURN true; END $$;
    CREATE FUNCTION "${trap}".equ(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO "${trap}".calls VALUES ('uuid = uuid'); RETURN true; END $$;
    CREATE OPERATOR "${trap}".= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = "${trap}".equ);
    CREATE FUNCTION "${trap}".now() RETURNS timestamptz LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO "${trap}".calls VALUES ('now()'); RETURN timestamptz '2999-01-01'; END $$;
    CREATE FUNCTION "${trap}".to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO "${trap}".calls VALUES ('to_regclass'); RETURN NULL; END $$;
  `);
  // The trap schema first (pg_catalog is still searched before it when not named): its exact
  // match for `bigint * interval` wins over pg_catalog's `float8 * interval`.
  planted = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 4, options: `-c search_path="${trap}",public` });
  planted.on('error', () => undefined);
  // The trap schema even before pg_catalog: the strongest a connection's search_path can be.
  hostile = new pg.Pool({ connectionString: testUrls().databaseUrl, max: 10, options: `-c search_path="${trap}",pg_catalog,public` });
  hostile.on('error', () => undefined);
});
afterAll(async () => {
  await planted.end();
  await hostile.end();
  await env.db.pool.query(`DROP SCHEMA IF EXISTS "${trap}" CASCADE`);
  await env.cleanup();
});

async function calls(): Promise<string[]> {
  const result = await env.db.pool.query<{ what: string }>(`SELECT what FROM "${trap}".calls ORDER BY 1`);
  return result.rows.map((r) => r.what);
}

describe('a hostile search_path (issue 9, defect 7)', () => {
  it('the planted operators are live on that connection (the test would see them)', async () => {
    const result = await planted.query<{ cutoff_in_future: boolean }>(`SELECT now() - 5::bigint * interval '1 millisecond' > timestamptz '2100-01-01' AS cutoff_in_future`);
    expect(result.rows[0]?.cutoff_in_future).toBe(true);
    expect(await calls()).toContain('bigint * interval');
    await env.db.pool.query(`TRUNCATE "${trap}".calls`);
  });

  async function cleanupCase(db: pg.Pool, consumer: string): Promise<void> {
    const schema = env.db.schema;
    await env.db.pool.query(
      `INSERT INTO "${schema}".inbox (consumer, message_id, received_at) VALUES
         ($1, gen_random_uuid(), now() - interval '2 minutes'), ($1, gen_random_uuid(), now() - interval '2 minutes'),
         ($1, gen_random_uuid(), now()), ($1 || '-other', gen_random_uuid(), now() - interval '2 minutes')`,
      [consumer],
    );
    expect(await cleanupInbox(db, { consumer, windowMs: 60_000, retry: { maxAttempts: 1 }, schema }), 'rows deleted').toBe(2);
    const left = await env.db.pool.query<{ consumer: string; n: number }>(
      `SELECT consumer, count(*)::int AS n FROM "${schema}".inbox WHERE consumer IN ($1, $1 || '-other') GROUP BY 1 ORDER BY 1`,
      [consumer],
    );
    expect(left.rows).toEqual([
      { consumer, n: 1 },
      { consumer: `${consumer}-other`, n: 1 },
    ]);
    expect(await calls()).toEqual([]);
  }

  it('cleanupInbox deletes exactly the rows past the window, and calls nothing planted', async () => {
    await cleanupCase(planted, 'sp');
  });

  it('cleanupInbox with the trap schema before pg_catalog, `text = text` planted as well', async () => {
    // Planted for this test only: core's loadEnvelopeSeal (the consumer's start) still compares
    // `name = $1` unqualified, which is core's to fix (reported), not the inbox's.
    await env.db.pool.query(`CREATE OPERATOR "${trap}".= (LEFTARG = text, RIGHTARG = text, FUNCTION = "${trap}".eq)`);
    try {
      await cleanupCase(hostile, 'sp-eq');
    } finally {
      await env.db.pool.query(`DROP OPERATOR "${trap}".= (text, text)`);
    }
  });

  it("the consumer's start, handler transaction and duplicate check call nothing planted", async () => {
    const consumer = consumerFor(env, recordEffect(env.db.schema), { db: hostile });
    await consumer.start();
    const id = await publish(env, { orderId: 'sp-1', total: 1 });
    await publish(env, { orderId: 'sp-1', total: 2 }, { messageId: id });
    await vi.waitFor(async () => {
      expect(await effects(env, id)).toBe(1);
      expect(consumer.stats).toMatchObject({ handled: 1, duplicates: 1 });
    }, WAIT);
    await consumer.stop();
    expect(await calls()).toEqual([]);
  });
});
