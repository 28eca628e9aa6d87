import type { PgPoolClientLike } from '@mailroom/core';
import { crashPoint, toExecutor } from '@mailroom/core/internal';
import { settleBatch } from './batch-settlement.js';
import { publishRows } from './publish-rows.js';
import type { ConfirmPublisher } from './publisher.js';
import type { OutboxRow } from './relay-sql.js';
import type { RelayRuntime } from './relay-runtime.js';

/**
 * Claims, publishes and settles one batch in one transaction on `client`; returns how many rows
 * it claimed. `partitions` (ordering mode) limits the claim to the leased partitions and
 * publishes each key in order. The work is reported to the relay only after COMMIT: a crash or
 * an error before it rolls everything back, and the rows are claimed (and published) again.
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
  await client.query(
    ordered
      ? `BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL idle_in_transaction_session_timeout = '${guard}'`
      : `BEGIN; SET LOCAL idle_in_transaction_session_timeout = '${guard}'`,
  );
  let committed = false;
  try {
    const rows = ordered
      ? (await db.query<OutboxRow>(sql.claimOrdered, [options.batchSize, options.partitions, partitions])).rows
      : (await db.query<OutboxRow>(sql.claim, [options.batchSize])).rows;
    if (rows.length === 0) {
      await client.query('COMMIT');
      committed = true;
      return 0;
    }
    crashPoint('relay.after-claim');
    const outcomes = await publishRows(publisher, rows, { ordered, maxMessageBytes: options.maxMessageBytes, publishTimeoutMs: options.publishTimeoutMs });
    crashPoint('relay.after-confirm-before-commit');
    const settlement = await settleBatch(db, options.schema, sql, rows, outcomes, options);
    await client.query('COMMIT');
    committed = true;
    crashPoint('relay.after-commit');
    runtime.committed(settlement, Date.now() - started);
    return rows.length;
  } finally {
    if (!committed) {
      runtime.rolledBack();
      await client.query('ROLLBACK').catch(() => undefined);
    }
  }
}
