import type { PublishOutcome } from '@mailroom/core/internal';
import { crashPoint } from '@mailroom/core/internal';
import type { ConfirmPublisher } from './publisher.js';
import type { OutboxRow } from './relay-sql.js';

/**
 * What happened to one claimed row: a publish outcome, `overLimit` (never sent: over
 * `maxMessageBytes`), or `skipped` (not sent in this batch: an earlier event of its key failed).
 */
export type RowOutcome = PublishOutcome | { kind: 'overLimit'; error: string } | { kind: 'skipped' };

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
 */
export async function publishRows(publisher: ConfirmPublisher, rows: readonly OutboxRow[], options: PublishRowsOptions): Promise<RowOutcome[]> {
  const outcomes: RowOutcome[] = rows.map(() => ({ kind: 'skipped' }));
  const pending: number[] = [];
  rows.forEach((row, i) => {
    const bytes = Buffer.byteLength(row.payload);
    if (bytes > options.maxMessageBytes) {
      outcomes[i] = { kind: 'overLimit', error: `payload of ${bytes} bytes exceeds maxMessageBytes ${options.maxMessageBytes}` };
    } else {
      pending.push(i);
    }
  });
  const missing = await publisher.ensureExchanges(pending.map((i) => (rows[i] as OutboxRow).exchange));
  const channel = await publisher.channel();
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const deadline = new Promise<void>(
    (resolve) =>
      (timer = setTimeout(() => {
        timedOut = true;
        resolve();
      }, options.publishTimeoutMs)),
  );
  const publishOne = async (i: number): Promise<RowOutcome> => {
    const row = rows[i] as OutboxRow;
    const absent = missing.get(row.exchange);
    const outcome: RowOutcome = absent !== undefined ? { kind: 'returned', error: absent } : await publisher.publish(channel, row, deadline);
    outcomes[i] = outcome;
    return outcome;
  };
  try {
    if (!options.ordered) {
      const all: Promise<RowOutcome>[] = [];
      for (const i of pending) {
        all.push(publishOne(i));
        await publisher.drained();
      }
      crashPoint('relay.after-publish-before-confirm');
      await Promise.all(all);
    } else {
      // One chain per key: the next event of a key is sent only after the previous one was
      // confirmed, so a nack or a return can never let a later event overtake an earlier one.
      const chains = new Map<string, number[]>();
      for (const i of pending) {
        const row = rows[i] as OutboxRow;
        const chainKey = row.key ?? `\u0000${row.message_id}`;
        const chain = chains.get(chainKey);
        if (chain) chain.push(i);
        else chains.set(chainKey, [i]);
      }
      await Promise.all(
        [...chains.values()].map(async (chain) => {
          for (const i of chain) {
            const outcome = await publishOne(i);
            if (outcome.kind !== 'confirmed') break;
          }
        }),
      );
    }
  } finally {
    clearTimeout(timer);
  }
  // A confirm may still arrive after the deadline: a fresh channel keeps it from being taken
  // for the confirm of a later publish.
  if (timedOut && outcomes.some((o) => o.kind === 'failed')) await publisher.reset();
  return outcomes;
}
