import type { PgPoolClientLike } from '@mailroom/core';
import { crashPoint, toExecutor } from '@mailroom/core/internal';
import { settleBatch } from './batch-settlement.js';
import { LinkFailure, type RelayLink } from './link-health.js';
import { publishRows } from './publish-rows.js';
import type { ConfirmPublisher } from './publisher.js';
import { withLiterals, type OutboxRow } from './relay-sql.js';
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
 * object planted in a schema of the connection's search_path. It commits with
 * `synchronous_commit = off`: the relay never waits for a WAL flush. A commit lost in a crash of
 * PostgreSQL itself brings back rows already published (they are published again: a duplicate the
 * consumers' inbox absorbs), never loses one: rows are only ever deleted after their confirm.
 * A batch is two round trips to PostgreSQL when nothing fails (BEGIN + claim; delete + COMMIT).
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
    // One message, one round trip: BEGIN, the settings and the claim (its values written in).
    const claim = ordered ? withLiterals(sql.claimOrdered, [options.batchSize, options.partitions, partitions]) : withLiterals(sql.claim, [options.batchSize]);
    const begun: unknown = await client.query(
      `BEGIN; SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL synchronous_commit = off; SET LOCAL idle_in_transaction_session_timeout = '${guard}'${ordered ? "; SET LOCAL lock_timeout = '5s'" : ''}; ${claim}`,
    );
    const rows = lastRows(begun);
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
    const { settlement, removed, published } = await settleBatch(db, options.schema, sql, rows, outcomes, options);
    // The delete of the settled rows travels with the COMMIT: one round trip. With the archive,
    // the published rows move into it in the same statement that deletes them.
    const deletes: string[] = [];
    if (options.archive) {
      if (published.length > 0) deletes.push(withLiterals(sql.removeArchived, [published.join(',')]));
      if (removed.length > 0) deletes.push(withLiterals(sql.remove, [removed.join(',')]));
    } else if (published.length + removed.length > 0) {
      deletes.push(withLiterals(sql.remove, [[...published, ...removed].join(',')]));
    }
    deletes.push('COMMIT');
    await client.query(deletes.join('; '));
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

/** The rows of the last statement of a multi-statement simple query (pg returns one result per statement). */
function lastRows(result: unknown): OutboxRow[] {
  const last = (Array.isArray(result) ? result.at(-1) : result) as { rows?: OutboxRow[] } | undefined;
  return last?.rows ?? [];
}
