import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { DEAD_LETTER_REASON, describeError, type DeadLetterReason } from '@mailroom/core';
import { crashPoint, type DecodedDelivery } from '@mailroom/core/internal';
import type { ConsumerContext } from './consumer-context.js';
import { publishDeadLetterCopy, publishRetryCopy } from './copy-publisher.js';
import type { MessageMetadata } from './handler.js';
import { HandlerFailure, isHandlerSqlState } from './handler-failure.js';
import { retryDelayMs } from './retry-policy.js';

/** What became of a failed delivery: settled one way or another, or to be tried again in place. */
export type Routed = 'settled' | 'again';

/** Acks or requeues a delivery; on a closed channel that is a no-op (the broker redelivers it). */
export function settle(channel: ConfirmChannel, message: ConsumeMessage, how: 'ack' | 'requeue'): void {
  try {
    if (how === 'ack') channel.ack(message);
    else channel.nack(message, false, true);
  } catch {
    // The channel is closed: the broker redelivers the message, and the inbox dedupes it.
  }
}

/**
 * Sends a delivery to the dead letters and acks it. The copy is confirmed on the broker before
 * the original is acked, so a crash in between leaves a duplicate dead letter, which the sink's
 * upsert absorbs, never a loss. Rejects (leaving the delivery unacked) when the copy was not kept.
 */
export async function deadLetter<TTx>(
  ctx: ConsumerContext<TTx>,
  channel: ConfirmChannel,
  message: ConsumeMessage,
  delivery: DecodedDelivery,
  verdict: { reason: DeadLetterReason; error: string },
): Promise<void> {
  const { name, queue } = ctx.options;
  const messageId = await publishDeadLetterCopy(channel, ctx.options.deadLetters.exchange, message, delivery, { ...verdict, source: queue });
  crashPoint('inbox.after-dead-letter-before-ack');
  settle(channel, message, 'ack');
  ctx.stats.deadLettered += 1;
  ctx.metrics.deadLettered.inc({ consumer: name, reason: verdict.reason });
  ctx.logger.warn(`consumer ${name}: message ${messageId} dead-lettered (${verdict.reason})`, { error: verdict.error });
  ctx.notify('deadLettered', { messageId, reason: verdict.reason, error: verdict.error, attempt: delivery.attempt });
}

/**
 * Sends a delivery to the delay queue of its next attempt and acks it. The copy is confirmed
 * before the ack: if the broker never took it, the original comes back.
 */
async function retryLater<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage, delivery: DecodedDelivery, meta: MessageMetadata, error: string): Promise<void> {
  const { name, queue } = ctx.options;
  const delayMs = retryDelayMs(ctx.options.retry, delivery.attempt);
  await publishRetryCopy(channel, message, delivery, queue, delayMs);
  settle(channel, message, 'ack');
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
 *   back to the queue after a pause, no attempt used; with ordering, tried again in place
 *   (`again`) so later messages of its key cannot overtake it;
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
    await sleep(1000, undefined, { ref: false });
    // With ordering, a requeued message would come back after later messages of its key that
    // this process already holds: try it again in place instead, holding its key.
    if (ordering && meta.key !== null && !ctx.stopping() && !ctx.closed(channel)) return 'again';
    settle(channel, message, 'requeue');
    return 'settled';
  }
  if (error.kind === 'aborted') {
    countRequeue(ctx, meta.messageId, error.message);
    settle(channel, message, 'requeue');
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
  } else {
    await retryLater(ctx, channel, message, delivery, meta, error.message);
  }
  return 'settled';
}
