import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { DEAD_LETTER_REASON, describeError, type DeadLetterReason } from '@mailroom/core';
import { crashPoint, type DecodedDelivery } from '@mailroom/core/internal';
import type { ConsumerContext } from './consumer-context.js';
import { UnencodableCopyError, publishDeadLetterCopy, publishRetryCopy } from './copy-publisher.js';
import type { MessageMetadata } from './handler.js';
import { HandlerFailure, isHandlerSqlState } from './handler-failure.js';
import { retryDelayMs } from './retry-policy.js';

/**
 * What became of a failed delivery: settled one way or another (or left unacked to a closed
 * channel), or to be tried again in place: `again` without spending an attempt (the database
 * failed), `retry` as its next attempt (the handler failed; sequenced failures, see below).
 */
export type Routed = 'settled' | 'again' | 'retry';

/**
 * True when a transient handler failure is retried in place, the delivery kept unacked while its
 * key waits: with ordering on and a key (a trip through a delay queue would let later messages
 * of the key overtake it), and for every message of a partitioned consumer (its partition queues
 * have no delay queues).
 */
function retriesInPlace<TTx>(ctx: ConsumerContext<TTx>, meta: MessageMetadata): boolean {
  return ctx.options.partitions !== undefined || (ctx.options.ordering && meta.key !== null);
}

/** Waits `ms`, in short steps, unless stop() begins or the channel closes first; true if it waited it all. */
async function waitInPlace<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (ctx.stopping() || ctx.closed(channel)) return false;
    const left = until - Date.now();
    if (left <= 0) return true;
    await sleep(Math.min(left, 200), undefined, { ref: false });
  }
}

/**
 * How long a delivery waits before it is given back to the queue. Nothing is ever requeued
 * without a pause: a delivery that fails the same way each time would otherwise come straight
 * back, over and over, holding a prefetch slot and burning CPU.
 */
export const REQUEUE_PAUSE_MS = 1000;

/** Acks or requeues a delivery; on a closed channel that is a no-op (the broker redelivers it). */
function settle(channel: ConfirmChannel, message: ConsumeMessage, how: 'ack' | 'requeue'): void {
  try {
    if (how === 'ack') channel.ack(message);
    else channel.nack(message, false, true);
  } catch {
    // The channel is closed: the broker redelivers the message, and the inbox dedupes it.
  }
}

/** Acks a delivery (a no-op on a closed channel: the broker redelivers it and the inbox dedupes it). */
export function ack(channel: ConfirmChannel, message: ConsumeMessage): void {
  settle(channel, message, 'ack');
}

/**
 * Gives a delivery back to the queue after {@link REQUEUE_PAUSE_MS}: the one way the consumer
 * requeues. No pause once stop() began or the channel closed: this consumer takes nothing more
 * from that channel, so no loop can form (and a closed channel gives the delivery back anyway).
 */
export async function requeueAfterPause<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
  if (!ctx.stopping() && !ctx.closed(channel)) await sleep(REQUEUE_PAUSE_MS, undefined, { ref: false });
  settle(channel, message, 'requeue');
}

/**
 * With ordering on, a dead letter of a keyed message with a valid id parks its key: the later
 * messages of the key are stored behind it (reason `parked`) instead of overtaking it.
 */
function headOf<TTx>(ctx: ConsumerContext<TTx>, delivery: DecodedDelivery, reason: DeadLetterReason): { key: string; messageId: string } | undefined {
  if (!ctx.options.ordering || delivery.key === null || delivery.messageId === null || reason === DEAD_LETTER_REASON.parked) return undefined;
  return { key: delivery.key, messageId: delivery.messageId };
}

/**
 * Stores a delivery of a parked key behind its head, as a dead letter with reason `parked`, and
 * acks it: the message waits in the store (listed as parked behind `head`) until the head is
 * replayed or discarded, which releases it in order. Its place behind the head is recorded
 * before the copy goes out, so a release never misses it.
 */
export async function parkDelivery<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage, delivery: DecodedDelivery & { messageId: string }, head: string): Promise<void> {
  await ctx.parks.parkBehind(head, delivery.messageId);
  await deadLetter(ctx, channel, message, delivery, {
    reason: DEAD_LETTER_REASON.parked,
    error: `Parked behind ${head}: an earlier message of its key is a dead letter; replay or discard ${head} to release this one in order.`,
  });
}

/**
 * Sends a delivery to the dead letters and acks it. The copy is sealed and confirmed on the
 * broker before the original is acked, so a crash in between leaves a duplicate dead letter,
 * which the sink's upsert absorbs, never a loss. A copy whose headers no longer fit goes with
 * trimmed headers (its error says which were dropped). Rejects (leaving the delivery unacked)
 * when the copy was not kept.
 */
export async function deadLetter<TTx>(
  ctx: ConsumerContext<TTx>,
  channel: ConfirmChannel,
  message: ConsumeMessage,
  delivery: DecodedDelivery,
  verdict: { reason: DeadLetterReason; error: string },
): Promise<void> {
  const { name, queue } = ctx.options;
  const head = headOf(ctx, delivery, verdict.reason);
  const copy = await publishDeadLetterCopy(channel, ctx.options.deadLetters.exchange, message, delivery, { ...verdict, source: queue }, ctx.seal);
  crashPoint('inbox.after-dead-letter-before-ack');
  // Sequenced dead letters: its key waits behind it from now on. Written after the copy is
  // confirmed and before the ack: a crash in between brings the delivery back, and it is
  // dead-lettered (and the key parked) again; a database failure leaves it unacked likewise.
  if (head !== undefined) await ctx.parks.park(head.key, head.messageId);
  crashPoint('inbox.after-park-before-ack');
  ack(channel, message);
  ctx.stats.deadLettered += 1;
  ctx.metrics.deadLettered.inc({ consumer: name, reason: verdict.reason });
  if (copy.dropped.length > 0) ctx.metrics.trimmedCopies.inc({ consumer: name });
  ctx.logger.warn(`consumer ${name}: message ${copy.messageId} dead-lettered (${verdict.reason})`, {
    error: copy.error,
    ...(copy.dropped.length > 0 ? { droppedHeaders: copy.dropped.map((d) => d.name).slice(0, 20) } : {}),
  });
  ctx.notify('deadLettered', { messageId: copy.messageId, reason: verdict.reason, error: copy.error, attempt: delivery.attempt });
}

/**
 * Sends a delivery to the delay queue of its next attempt and acks it. The copy is confirmed
 * before the ack: if the broker never took it, the original comes back. A retry copy that cannot
 * be encoded (the delivery's headers leave no room for mailroom's) would fail on every try: the
 * delivery goes to the dead letters as `unpublishable` instead.
 */
async function retryLater<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage, delivery: DecodedDelivery, meta: MessageMetadata, error: string): Promise<void> {
  const { name, queue } = ctx.options;
  const delayMs = retryDelayMs(ctx.options.retry, delivery.attempt);
  try {
    await publishRetryCopy(channel, message, delivery, { queue, delayMs, seal: ctx.seal });
  } catch (thrown) {
    if (!(thrown instanceof UnencodableCopyError)) throw thrown;
    await deadLetter(ctx, channel, message, delivery, {
      reason: DEAD_LETTER_REASON.unpublishable,
      error: `Attempt ${delivery.attempt} failed (${error}) and ${thrown.message}; dead-lettered instead of retried.`,
    });
    return;
  }
  ack(channel, message);
  ctx.stats.retries += 1;
  ctx.metrics.retries.inc({ consumer: name });
  ctx.logger.debug(`consumer ${name}: message ${meta.messageId} failed attempt ${delivery.attempt}, retrying in ${delayMs} ms`, { error });
  ctx.notify('retrying', { message: meta, error, delayMs });
}

function countRequeue<TTx>(ctx: ConsumerContext<TTx>, messageId: string, error: string): void {
  ctx.stats.requeued += 1;
  ctx.metrics.requeued.inc({ consumer: ctx.options.name });
  ctx.notify('requeued', { messageId, error });
}

/**
 * Decides where a delivery whose handler transaction failed goes:
 * - mailroom's own database work failed (BEGIN, the inbox insert, COMMIT, a dead connection):
 *   back to the queue after a pause ({@link REQUEUE_PAUSE_MS}), no attempt used; with ordering,
 *   tried again in place after the pause (`again`) so later messages of its key cannot overtake it;
 * - stop() aborted the handler: back to the queue, no attempt used;
 * - an invalid payload or a `NonRetryableError`: the dead letters at once;
 * - a transient failure: a delay queue, or the dead letters after the last attempt.
 */
export async function routeFailure<TTx>(
  ctx: ConsumerContext<TTx>,
  channel: ConfirmChannel,
  message: ConsumeMessage,
  delivery: DecodedDelivery,
  meta: MessageMetadata,
  thrown: unknown,
): Promise<Routed> {
  const { name, ordering } = ctx.options;
  // An integrity or serialization error at COMMIT comes from what the handler wrote: it follows
  // the retry policy instead of being requeued forever as if the database were down.
  const error = thrown instanceof HandlerFailure || !isHandlerSqlState(thrown) ? thrown : new HandlerFailure(thrown, 'transient');
  if (!(error instanceof HandlerFailure)) {
    // The database, not the message, is the problem. The pause keeps an outage from becoming a hot loop.
    ctx.logger.warn(`consumer ${name}: database error, message ${meta.messageId} goes back to the queue`, { error: describeError(error) });
    countRequeue(ctx, meta.messageId, describeError(error));
    // With ordering, a requeued message would come back after later messages of its key that
    // this process already holds: try it again in place instead (after the same pause), holding its key.
    if (ordering && meta.key !== null && !ctx.stopping() && !ctx.closed(channel)) {
      await sleep(REQUEUE_PAUSE_MS, undefined, { ref: false });
      if (!ctx.stopping() && !ctx.closed(channel)) return 'again';
    }
    await requeueAfterPause(ctx, channel, message);
    return 'settled';
  }
  if (error.kind === 'aborted') {
    // stop() gave up on it: no pause (see requeueAfterPause), no attempt used.
    countRequeue(ctx, meta.messageId, error.message);
    await requeueAfterPause(ctx, channel, message);
    return 'settled';
  }
  ctx.stats.failures += 1;
  ctx.metrics.failures.inc({ consumer: name, type: meta.type });
  if (error.kind === 'invalidPayload') {
    await deadLetter(ctx, channel, message, delivery, { reason: DEAD_LETTER_REASON.invalidPayload, error: error.message });
  } else if (error.kind === 'nonRetryable') {
    await deadLetter(ctx, channel, message, delivery, { reason: DEAD_LETTER_REASON.nonRetryable, error: error.message });
  } else if (delivery.attempt >= ctx.options.retry.maxAttempts) {
    await deadLetter(ctx, channel, message, delivery, { reason: DEAD_LETTER_REASON.maxAttempts, error: `Failed ${delivery.attempt} time(s); last error: ${error.message}` });
  } else if (retriesInPlace(ctx, meta)) {
    // Sequenced failure: the next attempt runs here after the policy's delay, unacked, its key
    // waiting behind it (other keys keep flowing). Counted in this process, so nobody outside can
    // forge it; a crash or stop() meanwhile gives the delivery back to the head of its queue,
    // where it starts counting again from 1.
    const delayMs = retryDelayMs(ctx.options.retry, delivery.attempt);
    ctx.stats.retries += 1;
    ctx.metrics.retries.inc({ consumer: name });
    ctx.logger.debug(`consumer ${name}: message ${meta.messageId} failed attempt ${delivery.attempt}, retrying in place in ${delayMs} ms`, { error: error.message });
    ctx.notify('retrying', { message: meta, error: error.message, delayMs });
    return (await waitInPlace(ctx, channel, delayMs)) ? 'retry' : 'settled';
  } else {
    await retryLater(ctx, channel, message, delivery, meta, error.message);
  }
  return 'settled';
}
