import { MailroomError } from '@mailroom/core';
import {
  delayQueueName,
  encodeDeadLetterCopy,
  encodeRetryCopy,
  publishConfirmed,
  type ConfirmChannelLike,
  type DeadLetterVerdict,
  type DecodedDelivery,
  type WireMessage,
} from '@mailroom/core/internal';

/** How long a copy waits for its publisher confirm before it counts as not kept. */
const CONFIRM_TIMEOUT_MS = 10_000;

/**
 * A retry or dead-letter copy the broker confirmed but returned: its queue is missing (a delay
 * queue or the dead-letter binding was deleted under the consumer). The consumer then opens a
 * fresh channel, which declares its topology again.
 */
export class UnroutableError extends MailroomError {}

/**
 * Publishes a copy confirmed and mandatory, and resolves only when the broker confirmed it and
 * did not return it: a copy counts as kept only then, so the original is acked only then.
 */
async function publishCopy(channel: ConfirmChannelLike, exchange: string, routingKey: string, content: Buffer, properties: { messageId?: string; headers: Record<string, unknown> }): Promise<void> {
  const target = `${exchange || 'the default exchange'} / ${routingKey}`;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CONFIRM_TIMEOUT_MS);
    timer.unref();
  });
  try {
    const outcome = await publishConfirmed(channel, exchange, routingKey, content, properties, { deadline }).outcome;
    if (outcome.kind === 'returned') throw new UnroutableError('PUBLISH_FAILED', `RabbitMQ returned a publish to ${target} as unroutable (${outcome.error}).`);
    if (outcome.kind !== 'confirmed') throw new MailroomError('PUBLISH_FAILED', `RabbitMQ did not confirm a publish to ${target} (${outcome.error}; the wait is ${CONFIRM_TIMEOUT_MS / 1000} s).`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sends a failed delivery to the delay queue of `delayMs` (it comes back to `queue` when the
 * delay ran out), carrying its attempt count and origin. Rejects when the copy was not kept.
 */
export async function publishRetryCopy(channel: ConfirmChannelLike, message: WireMessage, delivery: DecodedDelivery, queue: string, delayMs: number): Promise<void> {
  await publishCopy(channel, '', delayQueueName(queue, delayMs), message.content, encodeRetryCopy(message, delivery));
}

/**
 * Sends a delivery to the dead-letter exchange (routed by the consumer's queue, `verdict.source`)
 * with the verdict; resolves with the dead letter's message id (derived from the body when the
 * delivery had no usable one). Rejects when the copy was not kept.
 */
export async function publishDeadLetterCopy(channel: ConfirmChannelLike, exchange: string, message: WireMessage, delivery: DecodedDelivery, verdict: DeadLetterVerdict): Promise<string> {
  const copy = encodeDeadLetterCopy(message, delivery, verdict);
  await publishCopy(channel, exchange, verdict.source, message.content, copy);
  return copy.messageId;
}
