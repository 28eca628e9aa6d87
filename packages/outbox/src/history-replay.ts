import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_SCHEMA, MailroomError, describeError, silentLogger, type AmqpConnection, type Logger, type Queryable } from '@mailroom/core';
import { resolveAmqpConnection } from '@mailroom/core/internal';
import { oldestArchived, readArchivePage, type HistoryFilter } from './history-read.js';
import { publishRows } from './publish-rows.js';
import { ConfirmPublisher } from './publisher.js';
import type { OutboxRow } from './relay-sql.js';

/** Progress of a replay, after each confirmed page. */
export interface ReplayProgress {
  /** Events published and confirmed so far. */
  published: number;
  /** The outbox id of the last one. */
  lastOutboxId: string | null;
  /** Events per second since the start. */
  ratePerSecond: number;
}

/** Options of {@link replayHistory}. */
export interface ReplayHistoryOptions extends HistoryFilter {
  /** Where the archive is: a pg Pool (or anything mailroom takes as a database). */
  database: Queryable;
  /** A RabbitMQ URL, several of one cluster, or a connection from `createAmqpConnection` (not closed). */
  amqp: string | readonly string[] | AmqpConnection;
  /** The one queue that receives the events (the consumer's work queue); it must exist. */
  queue: string;
  /** The schema of mailroom's tables. Default: `mailroom`. */
  schema?: string;
  /** At most this many events per second. Default: no limit. */
  ratePerSecond?: number;
  /** Events read and published per page. Default: 500. */
  batchSize?: number;
  /** How long a page waits for its confirms, in ms. Default: 10000. */
  publishTimeoutMs?: number;
  /** Called after each confirmed page. */
  onProgress?: (progress: ReplayProgress) => void;
  /** Stops the replay after the page in flight. */
  signal?: AbortSignal;
  logger?: Logger;
}

/** What a replay did. */
export interface ReplayResult {
  published: number;
  lastOutboxId: string | null;
  /** The oldest event the archive holds (null: empty). */
  oldestArchived: Date | null;
  /**
   * True when `since` is older than the oldest archived event (or none was given and the archive
   * has already dropped partitions): events before `oldestArchived` are gone, the replay cannot
   * give them.
   */
  beyondRetention: boolean;
  /** True when `signal` stopped it early. */
  aborted: boolean;
}

/**
 * Republishes archived events, with their original message ids, headers (version header
 * included) and the relay's wire format, to ONE queue: through the default exchange straight to
 * `queue`, so no other subscriber of the original exchange sees them. Events go in outbox order
 * on one confirm channel, a page at a time, each page confirmed before the next: the queue gets
 * every key's events in the order they were first published. A consumer under a new name
 * rebuilds from scratch; an existing one handles only what it lacks (its inbox dedupes the rest,
 * as long as its inbox retention covers them). A publish that is not confirmed (the queue was
 * deleted, a nack) stops the replay with `PUBLISH_FAILED`, naming how many went out: running it
 * again is safe (the inbox dedupes).
 *
 * ```ts
 * const result = await replayHistory({ database: pool, amqp: AMQP_URL, queue: 'reporting', since: new Date(Date.now() - 86_400_000) });
 * ```
 */
export async function replayHistory(options: ReplayHistoryOptions): Promise<ReplayResult> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const batchSize = options.batchSize ?? 500;
  const rate = options.ratePerSecond;
  if (typeof options.queue !== 'string' || options.queue.length === 0 || Buffer.byteLength(options.queue) > 255 || options.queue.includes('\u0000')) {
    throw new MailroomError('INVALID_CONFIG', '"queue" must be a queue name of 1 to 255 bytes without NUL characters.');
  }
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new MailroomError('INVALID_CONFIG', '"batchSize" must be an integer from 1 to 10000.');
  if (rate !== undefined && (!Number.isFinite(rate) || rate <= 0)) throw new MailroomError('INVALID_CONFIG', '"ratePerSecond" must be a positive number.');
  const oldest = await oldestArchived(options.database, { schema });
  const beyondRetention = oldest !== null && options.since !== undefined && options.since.getTime() < oldest.getTime();
  const { connection, owned } = resolveAmqpConnection(options.amqp);
  const publisher = new ConfirmPublisher(connection, { declareExchanges: false, logger: options.logger ?? silentLogger });
  const started = Date.now();
  let published = 0;
  let cursor: string | null = null;
  let aborted = false;
  try {
    // A replay to a queue that does not exist would be returned row by row: say so once, first.
    const probe = await (await connection.get()).createChannel();
    probe.on('error', () => undefined);
    const present = await probe.checkQueue(options.queue).then(
      () => true,
      () => false,
    );
    await probe.close().catch(() => undefined);
    if (!present) throw new MailroomError('INVALID_CONFIG', `Queue "${options.queue}" does not exist: start its consumer once (it declares the queue), then replay.`);
    // The page is capped by the rate so that one page never outruns a second of it.
    const pageSize = rate === undefined ? batchSize : Math.max(1, Math.min(batchSize, Math.floor(rate)));
    for (;;) {
      if (options.signal?.aborted === true) {
        aborted = true;
        break;
      }
      const page = await readArchivePage(options.database, schema, options, cursor, pageSize, 'asc');
      if (page.length === 0) break;
      const rows: OutboxRow[] = page.map((a) => ({
        id: a.outbox_id,
        message_id: a.message_id,
        type: a.type,
        exchange: '',
        routing_key: options.queue,
        key: a.key,
        headers: a.headers,
        payload: a.payload,
        occurred_ms: a.occurred_ms,
        created_ms: a.published_ms,
        attempts: 0,
        suspect: false,
      }));
      const outcomes = await publishRows(publisher, rows, {
        ordered: false,
        maxMessageBytes: Number.MAX_SAFE_INTEGER,
        publishTimeoutMs: options.publishTimeoutMs ?? 10_000,
      });
      const failed = outcomes.findIndex((o) => o.kind !== 'confirmed');
      if (failed !== -1) {
        const o = outcomes[failed] as { kind: string; error?: string };
        throw new MailroomError('PUBLISH_FAILED', `Replay stopped after ${published} events: event ${page[failed]?.message_id} was not confirmed (${o.kind}: ${o.error ?? ''}); running it again is safe.`, {
          details: { published, lastOutboxId: cursor },
        });
      }
      published += page.length;
      cursor = (page[page.length - 1] as { outbox_id: string }).outbox_id;
      const elapsed = Math.max(1, Date.now() - started);
      options.onProgress?.({ published, lastOutboxId: cursor, ratePerSecond: (published * 1000) / elapsed });
      if (page.length < pageSize) break;
      if (rate !== undefined) {
        const due = started + (published * 1000) / rate;
        if (due > Date.now()) await sleep(due - Date.now());
      }
    }
  } catch (error) {
    if (error instanceof MailroomError) throw error;
    throw new MailroomError('PUBLISH_FAILED', `Replay stopped after ${published} events: ${describeError(error)}; running it again is safe.`, { cause: error, details: { published, lastOutboxId: cursor } });
  } finally {
    await publisher.close().catch(() => undefined);
    if (owned) await connection.close().catch(() => undefined);
  }
  return { published, lastOutboxId: cursor, oldestArchived: oldest, beyondRetention, aborted };
}
