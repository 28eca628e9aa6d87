import type { ConfirmChannel } from 'amqplib';
import { describeError } from '@mailroom/core';
import { crashPoint, publishLimitProblem } from '@mailroom/core/internal';
import { isPreconditionFailed } from './guarded-channel.js';
import type { ConfirmPublisher, RowPublishOutcome } from './publisher.js';
import { PRECONDITION_FAILED_PREFIX, type OutboxRow } from './relay-sql.js';

/**
 * What happened to one claimed row: a publish outcome (`unpublishable` included), `overLimit`
 * (never sent: over `maxMessageBytes`), or `skipped` (not sent in this batch: an earlier event of
 * its key failed).
 */
export type RowOutcome = RowPublishOutcome | { kind: 'overLimit'; error: string } | { kind: 'skipped' };

/** Limits of {@link publishRows}. */
export interface PublishRowsOptions {
  /** Publish each key's rows one after the other, each after the previous one's confirm. */
  ordered: boolean;
  maxMessageBytes: number;
  /** How long the batch waits for its confirms. */
  publishTimeoutMs: number;
}

/**
 * Publishes a claimed batch and returns one outcome per row, in row order; never rejects for a
 * row's failure. Without ordering every publish is written at once (waiting only when the
 * channel's buffer is full) and the confirms are awaited together.
 *
 * What can never be published is found without a retry loop: a row over `maxMessageBytes` or the
 * AMQP limits is not sent (`overLimit`, `unpublishable`); a publish amqplib cannot encode is
 * `unpublishable`. A broker that closes the channel with 406 PRECONDITION_FAILED (a body over its
 * `max_message_size`) fails every publish still unconfirmed on it, so no single row can be blamed:
 * those rows are retried as suspects (their `last_error` starts with
 * {@link PRECONDITION_FAILED_PREFIX}), and a suspect is published alone, after the others, so a
 * 406 on its own channel is its own and it becomes `unpublishable`.
 */
export async function publishRows(publisher: ConfirmPublisher, rows: readonly OutboxRow[], options: PublishRowsOptions): Promise<RowOutcome[]> {
  const outcomes: RowOutcome[] = rows.map(() => ({ kind: 'skipped' }));
  const headers: Array<Record<string, unknown>> = [];
  const pending: number[] = [];
  rows.forEach((row, i) => {
    const bytes = Buffer.byteLength(row.payload);
    headers[i] = publisher.headersOf(row);
    const problem = publishLimitProblem({
      exchange: row.exchange,
      routingKey: row.routing_key,
      type: row.type,
      messageId: row.message_id,
      headers: headers[i],
    });
    if (bytes > options.maxMessageBytes) {
      outcomes[i] = { kind: 'overLimit', error: `payload of ${bytes} bytes exceeds maxMessageBytes ${options.maxMessageBytes}` };
    } else if (problem !== undefined) {
      outcomes[i] = { kind: 'unpublishable', error: problem };
    } else {
      pending.push(i);
    }
  });
  const missing = await publisher.ensureExchanges(pending.map((i) => (rows[i] as OutboxRow).exchange));
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const deadline = new Promise<void>(
    (resolve) =>
      (timer = setTimeout(() => {
        timedOut = true;
        resolve();
      }, options.publishTimeoutMs)),
  );
  const publishOne = async (i: number, channel: ConfirmChannel): Promise<RowOutcome> => {
    const row = rows[i] as OutboxRow;
    const absent = missing.get(row.exchange);
    const outcome: RowOutcome = absent !== undefined ? { kind: 'returned', error: absent } : await publisher.publish(channel, row, headers[i] as Record<string, unknown>, deadline);
    outcomes[i] = outcome;
    return outcome;
  };
  // One chain per key (ordering) or per row: a chain's rows go one after the other, each after
  // the previous one's confirm, so a nack or a return never lets a later event of a key overtake.
  const chains = new Map<string, number[]>();
  for (const i of pending) {
    const row = rows[i] as OutboxRow;
    const chainKey = options.ordered && row.key !== null ? row.key : `\u0000${row.message_id}`;
    const chain = chains.get(chainKey);
    if (chain) chain.push(i);
    else chains.set(chainKey, [i]);
  }
  const suspect = (chain: number[]): boolean => chain.some((i) => (rows[i] as OutboxRow).suspect);
  const regular = [...chains.values()].filter((c) => !suspect(c));
  const suspects = [...chains.values()].filter(suspect);
  try {
    if (regular.length > 0) {
      const channel = await publisher.channel();
      if (!options.ordered) {
        const all: Promise<RowOutcome>[] = [];
        for (const [i] of regular) {
          all.push(publishOne(i as number, channel));
          await publisher.drained();
        }
        crashPoint('relay.after-publish-before-confirm');
        await Promise.all(all);
      } else {
        await Promise.all(
          regular.map(async (chain) => {
            for (const i of chain) if ((await publishOne(i, channel)).kind !== 'confirmed') break;
          }),
        );
      }
      const closed = publisher.closeErrorOf(channel);
      if (isPreconditionFailed(closed)) {
        for (const chain of regular) {
          for (const i of chain) {
            const o = outcomes[i] as RowOutcome;
            if (o.kind === 'failed') outcomes[i] = { kind: 'failed', error: `${PRECONDITION_FAILED_PREFIX} ${describeError(closed)} (retried alone)` };
          }
        }
      }
    }
    // Suspects alone, one publish in flight at a time, each on a channel of its own if need be.
    for (const chain of suspects) {
      for (const i of chain) {
        const channel = await Promise.race([publisher.channel(), deadline.then(() => undefined)]);
        if (channel === undefined) {
          outcomes[i] = { kind: 'failed', error: 'no channel before the deadline' };
          break;
        }
        const outcome = await publishOne(i, channel);
        const closed = publisher.closeErrorOf(channel);
        if (outcome.kind === 'failed' && isPreconditionFailed(closed)) {
          outcomes[i] = { kind: 'unpublishable', error: `the broker refused it: ${describeError(closed)}` };
        }
        if (outcome.kind !== 'confirmed') break;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  // A confirm may still arrive after the deadline: a fresh channel keeps it from being taken
  // for the confirm of a later publish.
  if (timedOut && outcomes.some((o) => o.kind === 'failed')) await publisher.reset();
  return outcomes;
}
