import { MailroomError } from '@mailroom/core';
import {
  delayQueueName,
  encodeDeadLetterCopy,
  encodedHeaderBytes,
  encodeRetryCopy,
  publishConfirmed,
  type ConfirmChannelLike,
  type CopyProperties,
  type DeadLetterVerdict,
  type DecodedDelivery,
  type EnvelopeSeal,
  type WireMessage,
} from '@mailroom/core/internal';
import { COPY_HEADER_BUDGET, describeDropped, fitCopy, type DroppedHeader } from './copy-fitting.js';

/** How long a copy waits for its publisher confirm before it counts as not kept. */
const CONFIRM_TIMEOUT_MS = 10_000;

/**
 * A retry or dead-letter copy the broker confirmed but returned: its queue is missing (a delay
 * queue or the dead-letter binding was deleted under the consumer). The consumer then opens a
 * fresh channel, which declares its topology again.
 */
export class UnroutableError extends MailroomError {}

/**
 * A copy that can never be published as it is: amqplib refuses to encode it (its headers are
 * over the 64 KiB table, say), on every try. Nothing reached the broker and the channel is fine;
 * another try would fail the same way, so the delivery must not be requeued for it.
 */
export class UnencodableCopyError extends MailroomError {}

// amqplib throws these synchronously, before a byte is written, for what it cannot encode.
const ENCODER_REFUSAL = /^(RangeError|TypeError)\b/;

/**
 * Publishes a copy confirmed and mandatory, and resolves only when the broker confirmed it and
 * did not return it: a copy counts as kept only then, so the original is acked only then.
 */
async function publishCopy(channel: ConfirmChannelLike, exchange: string, routingKey: string, content: Buffer, properties: CopyProperties): Promise<void> {
  const target = `${exchange || 'the default exchange'} / ${routingKey}`;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CONFIRM_TIMEOUT_MS);
    timer.unref();
  });
  try {
    const outcome = await publishConfirmed(channel, exchange, routingKey, content, properties, { deadline }).outcome;
    if (outcome.kind === 'returned') throw new UnroutableError('PUBLISH_FAILED', `RabbitMQ returned a publish to ${target} as unroutable (${outcome.error}).`);
    if (outcome.kind === 'failed' && ENCODER_REFUSAL.test(outcome.error)) {
      throw new UnencodableCopyError('PUBLISH_FAILED', `amqplib cannot encode the copy for ${target}: ${outcome.error}`);
    }
    if (outcome.kind !== 'confirmed') throw new MailroomError('PUBLISH_FAILED', `RabbitMQ did not confirm a publish to ${target} (${outcome.error}; the wait is ${CONFIRM_TIMEOUT_MS / 1000} s).`);
  } finally {
    clearTimeout(timer);
  }
}

/** Where and how a retry copy goes. */
export interface RetryCopyTarget {
  /** The work queue it comes back to. */
  queue: string;
  /** The delay before it does. */
  delayMs: number;
  /** Seals its attempt count and origin for `queue`. */
  seal: EnvelopeSeal;
}

/**
 * Sends a failed delivery to the delay queue of `delayMs` (it comes back to `queue` when the
 * delay ran out), carrying its attempt count and origin, sealed. Rejects when the copy was not
 * kept; with an {@link UnencodableCopyError} (and nothing published) when the copy cannot be
 * encoded: its headers do not fit with mailroom's retry headers.
 */
export async function publishRetryCopy(channel: ConfirmChannelLike, message: WireMessage, delivery: DecodedDelivery, target: RetryCopyTarget): Promise<void> {
  const properties = encodeRetryCopy(message, delivery, { seal: target.seal, queue: target.queue });
  const bytes = encodedHeaderBytes(properties.headers);
  if (bytes > COPY_HEADER_BUDGET) {
    throw new UnencodableCopyError(
      'PUBLISH_FAILED',
      `its retry copy cannot be published: with mailroom's retry headers its headers encode to ${bytes} bytes, over AMQP's 65536-byte (64 KiB) header table`,
      { details: { headerBytes: bytes } },
    );
  }
  await publishCopy(channel, '', delayQueueName(target.queue, target.delayMs), message.content, properties);
}

/** What became of a dead letter's copy. */
export interface PublishedDeadLetter {
  /** The dead letter's message id (derived from the body when the delivery had no usable one). */
  messageId: string;
  /** Headers dropped so that the copy fits (the error it carries says so); empty as a rule. */
  dropped: DroppedHeader[];
  /** The error the copy carries (the verdict's, plus a note when headers were dropped). */
  error: string;
}

// The dead letter's error keeps the start of the verdict's error when a note is added: the codec
// keeps the first 4000 characters of the whole.
const KEPT_ERROR_CHARS = 2500;

function noted(error: string, dropped: readonly DroppedHeader[]): string {
  if (dropped.length === 0) return error;
  return `${error.length > KEPT_ERROR_CHARS ? `${error.slice(0, KEPT_ERROR_CHARS)}…` : error} ${describeDropped(dropped)}`;
}

/**
 * Sends a delivery to the dead-letter exchange (routed by the consumer's queue, `verdict.source`)
 * with the verdict, sealed so the sink stores it as a mailroom consumer's. A copy whose headers
 * no longer fit is sent with the body and trimmed headers (see `fitCopy`), its error saying what
 * was dropped; if amqplib still refuses it, every header the delivery came with is dropped.
 * Rejects when the copy was not kept.
 */
export async function publishDeadLetterCopy(
  channel: ConfirmChannelLike,
  exchange: string,
  message: WireMessage,
  delivery: DecodedDelivery,
  verdict: DeadLetterVerdict,
  seal: EnvelopeSeal,
): Promise<PublishedDeadLetter> {
  const encode = (m: WireMessage, dropped: readonly DroppedHeader[]): CopyProperties & { messageId: string } =>
    encodeDeadLetterCopy(m, delivery, { ...verdict, error: noted(verdict.error, dropped) }, seal);
  let fitted = fitCopy(message, encode);
  try {
    await publishCopy(channel, exchange, verdict.source, message.content, fitted.properties);
  } catch (error) {
    if (!(error instanceof UnencodableCopyError)) throw error;
    // Our size estimate and amqplib disagree (a header value it cannot encode at all): keep only
    // what the codec writes for the copy.
    fitted = fitCopy(message, encode, 0);
    await publishCopy(channel, exchange, verdict.source, message.content, fitted.properties);
  }
  return { messageId: fitted.properties.messageId, dropped: fitted.dropped, error: noted(verdict.error, fitted.dropped) };
}
