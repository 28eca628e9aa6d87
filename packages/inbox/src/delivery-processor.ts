import { performance } from 'node:perf_hooks';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { describeError } from '@mailroom/core';
import { SpanKind, crashPoint, decodeDelivery, extractTraceContext, withSpan, type DecodedDelivery } from '@mailroom/core/internal';
import type { ConsumerContext } from './consumer-context.js';
import { UnroutableError } from './copy-publisher.js';
import { validateDelivery, type AcceptedDelivery } from './delivery-validation.js';
import { deadLetter, routeFailure, settle, type Routed } from './failure-routing.js';
import type { MessageMetadata } from './handler.js';
import { runHandlerTransaction, type TransactionOutcome } from './handler-transaction.js';

/**
 * Handles one delivery to the end: it is acked (handled, duplicate, retried or dead-lettered) or
 * given back to the queue. Never rejects.
 */
export async function processDelivery<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
  try {
    // A delivery whose database work failed under ordering is tried again in place (see routeFailure).
    let routed: Routed;
    do routed = await processOnce(ctx, channel, message);
    while (routed === 'again');
  } catch (error) {
    // Only a broker failure while retrying or dead-lettering gets here: the delivery stays
    // unacked and the broker hands it out again once the channel is gone.
    ctx.stats.requeued += 1;
    ctx.metrics.requeued.inc({ consumer: ctx.options.name });
    ctx.logger.warn(`consumer ${ctx.options.name}: could not settle a delivery; it will be redelivered`, { error: describeError(error) });
    settle(channel, message, 'requeue');
    // A returned copy means our topology is gone: a fresh channel declares it again.
    if (error instanceof UnroutableError) channel.close().catch(() => undefined);
  }
}

async function processOnce<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage): Promise<Routed> {
  const { name, queue } = ctx.options;
  const delivery = decodeDelivery(message, queue);
  const checked = validateDelivery(message, delivery, { consumer: name, handlers: ctx.options.handlers, maxBodyBytes: ctx.options.maxBodyBytes });
  if (!checked.accepted) {
    await deadLetter(ctx, channel, message, delivery, { reason: checked.reason, error: checked.error });
    return 'settled';
  }
  const meta = metadataOf(ctx, message, delivery, checked);
  const started = performance.now();
  let outcome: TransactionOutcome;
  try {
    outcome = await withSpan(
      `${queue} process`,
      {
        kind: SpanKind.CONSUMER,
        parent: extractTraceContext(delivery.headers),
        attributes: {
          'messaging.system': 'rabbitmq',
          'messaging.operation.type': 'process',
          'messaging.destination.name': queue,
          'messaging.message.id': meta.messageId,
          'messaging.consumer.group.name': name,
          'mailroom.message.type': meta.type,
          'mailroom.attempt': meta.attempt,
        },
      },
      async (span) => {
        const result = await transaction(ctx, checked, meta);
        span.setAttribute('mailroom.outcome', result);
        return result;
      },
    );
  } catch (thrown) {
    return routeFailure(ctx, channel, message, delivery, meta, thrown);
  }
  crashPoint('inbox.after-commit-before-ack');
  settle(channel, message, 'ack');
  const seconds = (performance.now() - started) / 1000;
  if (outcome === 'duplicate') {
    ctx.stats.duplicates += 1;
    ctx.metrics.duplicates.inc({ consumer: name });
    ctx.notify('duplicate', meta);
  } else {
    ctx.stats.handled += 1;
    ctx.metrics.handled.inc({ consumer: name, type: meta.type });
    ctx.metrics.handlerSeconds.observe(seconds, { consumer: name });
    ctx.notify('handled', meta, seconds * 1000);
  }
  return 'settled';
}

async function transaction<TTx>(ctx: ConsumerContext<TTx>, checked: AcceptedDelivery<TTx>, meta: MessageMetadata): Promise<TransactionOutcome> {
  const controller = new AbortController();
  ctx.aborts.add(controller);
  try {
    return await runHandlerTransaction({
      db: ctx.options.db,
      inboxTable: ctx.inboxTable,
      consumer: ctx.options.name,
      binding: checked.binding,
      body: checked.body,
      message: meta,
      signal: controller.signal,
    });
  } finally {
    ctx.aborts.delete(controller);
  }
}

function metadataOf<TTx>(ctx: ConsumerContext<TTx>, message: ConsumeMessage, delivery: DecodedDelivery, checked: AcceptedDelivery<TTx>): MessageMetadata {
  return {
    messageId: checked.messageId,
    type: checked.binding.contract.type,
    key: delivery.key,
    headers: delivery.headers,
    occurredAt: delivery.occurredAt,
    attempt: delivery.attempt,
    redelivered: message.fields.redelivered,
    exchange: delivery.origin.exchange,
    routingKey: delivery.origin.routingKey,
    consumer: ctx.options.name,
    queue: ctx.options.queue,
  };
}
