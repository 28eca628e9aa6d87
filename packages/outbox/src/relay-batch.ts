import type { PgPoolClientLike } from '@mailroom/core';
import { crashPoint, toExecutor } from '@mailroom/core/internal';
import { settleBatch } from './batch-settlement.js';
import { LinkFailure, type RelayLink } from './link-health.js';
import { publishRows } from './publish-rows.js';
import type { ConfirmPublisher } from './publisher.js';
import type { OutboxRow } from './relay-sql.js';
import type { RelayRuntime } from './relay-runtime.js';

/**
 * Claims, publishes and settles one batch in one transaction on `client`; returns how many rows
 * it claimed. `partitions` (ordering mode) limits the claim to the leased partitions and
 * publishes each key in order. The work is reported to the relay only after COMMIT: a crash or
 * an error before it rolls everything back, and the rows are claimed (and published) again. An
 * error is thrown as a `LinkFailure` naming the link it came from.
 *
 * The transaction pins `search_path` to pg_catalog (SET LOCAL: the pool's sessions are left as
 * they were), so no statement of the batch, core's dead-letter writer included, can reach an
 * object planted in a schema of the connection's search_path.
 */
export async function runBatch(
  runtime: RelayRuntime,
  client: PgPoolClientLike,
  publisher: ConfirmPublisher,
  partitions: readonly number[] | undefined,
): Promise<number> {
  const { options, sql } = runtime;
  const ordered = partitions !== undefined;
  const started = Date.now();
  const db = toExecutor(client);
  // A relay that hangs mid-batch must not hold its rows' locks forever.
  const guard = `${Math.max(options.publishTimeoutMs * 3, 30_000)}ms`;
  let link: RelayLink = 'postgres';
  let committed = false;
  try {
    await client.query(
      `BEGIN; SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL idle_in_transaction_session_timeout = '${guard}'${ordered ? "; SET LOCAL lock_timeout = '5s'" : ''}`,
    );
    const rows = ordered
      ? (await db.query<OutboxRow>(sql.claimOrdered, [options.batchSize, options.partitions, partitions])).rows
      : (await db.query<OutboxRow>(sql.claim, [options.batchSize])).rows;
    if (rows.length === 0) {
      await client.query('COMMIT');
      committed = true;
      return 0;
    }
    crashPoint('relay.after-claim');
    link = 'rabbitmq';
    const outcomes = await publishRows(publisher, rows, { ordered, maxMessageBytes: options.maxMessageBytes, publishTimeoutMs: options.publishTimeoutMs });
    link = 'postgres';
    crashPoint('relay.after-confirm-before-commit');
    const settlement = await settleBatch(db, options.schema, sql, rows, outcomes, options);
    await client.query('COMMIT');
    committed = true;
    crashPoint('relay.after-commit');
    runtime.committed(settlement, Date.now() - started);
    return rows.length;
  } catch (error) {
    throw new LinkFailure(link, error);
  } finally {
    if (!committed) await client.query('ROLLBACK').catch(() => undefined);
  }
}
