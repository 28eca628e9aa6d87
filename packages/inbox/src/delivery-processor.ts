import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { describeError } from '@mailroom/core';
import { SpanKind, crashPoint, decodeDelivery, extractTraceContext, retryTransient, withSpan, type DecodedDelivery } from '@mailroom/core/internal';
import type { ConsumerContext } from './consumer-context.js';
import { UnroutableError } from './copy-publisher.js';
import { validateDelivery, type AcceptedDelivery } from './delivery-validation.js';
import { LOCK_CONFLICT_RERUNS } from './consumer-events.js';
import { isLockConflict } from './handler-failure.js';
import { REQUEUE_PAUSE_MS, ack, deadLetter, parkDelivery, requeueAfterPause, routeFailure, type Routed } from './failure-routing.js';
import type { ParkCheck } from './parked-keys.js';
import type { MessageMetadata } from './handler.js';
import type { TransactionOutcome } from './handler-transaction.js';
import { payloadHash } from './payload-hash.js';

/**
 * Handles one delivery to the end: it is acked (handled, duplicate, retried or dead-lettered) or
 * given back to the queue after a pause. Never rejects.
 */
export async function processDelivery<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
  try {
    // A delivery whose database work failed under ordering is tried again in place, and so is a
    // handler failure when failures are sequenced, as its next attempt (see routeFailure).
    // So is a transaction PostgreSQL undid for a deadlock or serialization failure, at once, a
    // few times (see LOCK_CONFLICT_RERUNS).
    let routed: Routed;
    const runs = { inPlace: 0, lockConflicts: 0 };
    do {
      routed = await processOnce(ctx, channel, message, runs);
      if (routed === 'retry') runs.inPlace += 1;
    } while (routed !== 'settled');
  } catch (error) {
    // Only a broker failure while retrying or dead-lettering gets here (a copy not confirmed, or
    // returned): the delivery goes back to the queue after a pause, never at once.
    ctx.stats.requeued += 1;
    ctx.metrics.requeued.inc({ consumer: ctx.options.name });
    ctx.logger.warn(`consumer ${ctx.options.name}: could not settle a delivery; it goes back to the queue in ${REQUEUE_PAUSE_MS} ms`, { error: describeError(error) });
    const rawId: unknown = message.properties.messageId;
    ctx.notify('requeued', { messageId: typeof rawId === 'string' ? rawId.slice(0, 100) : '', error: describeError(error) });
    // A returned copy means our topology is gone: a fresh channel declares it again (and gives the delivery back).
    if (error instanceof UnroutableError) channel.close().catch(() => undefined);
    await requeueAfterPause(ctx, channel, message);
  }
}

async function processOnce<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage, runs: { inPlace: number; lockConflicts: number }): Promise<Routed> {
  const { name, queue } = ctx.options;
  const { inPlace } = runs;
  const decoded = decodeDelivery(message, queue, ctx.seal);
  // Attempts made here already (retried in place) count on top of what the delivery carries.
  const delivery = inPlace > 0 ? { ...decoded, attempt: decoded.attempt + inPlace } : decoded;
  if (delivery.forged && inPlace === 0) countForged(ctx, message);
  // Sequenced dead letters: a message of a key parked behind a dead letter is stored behind it,
  // whatever it holds (even one that would fail validation comes after the head).
  let park: ParkCheck = { kind: 'free' };
  if (ctx.options.ordering && delivery.key !== null && delivery.messageId !== null) {
    try {
      park = await ctx.parks.check(delivery.key, delivery.messageId);
    } catch (error) {
      // The database cannot say whether the key is parked: wait and ask again, holding the key.
      return parkCheckFailed(ctx, channel, message, error);
    }
    if (park.kind === 'parked') {
      await parkDelivery(ctx, channel, message, { ...delivery, messageId: delivery.messageId }, park.head);
      return 'settled';
    }
  }
  const checked = validateDelivery(message, delivery, {
    consumer: name,
    handlers: ctx.options.handlers,
    maxBodyBytes: ctx.options.maxBodyBytes,
    maxJsonDepth: ctx.options.maxJsonDepth,
  });
  if (!checked.accepted) {
    await deadLetter(ctx, channel, message, delivery, { reason: checked.reason, error: checked.error });
    return 'settled';
  }
  const meta = metadataOf(ctx, message, delivery, checked);
  const receivedHash = payloadHash(message.content);
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
        const result = await transaction(ctx, checked, meta, receivedHash);
        span.setAttribute('mailroom.outcome', outcomeName(result, receivedHash));
        return result;
      },
    );
  } catch (thrown) {
    // A deadlock or serialization failure says nothing about the message: PostgreSQL undid the
    // transaction for what others held at that moment (a group-commit batch of another process
    // holding a saga's row, say). Run again at once, in place (order kept), no attempt used.
    if (isLockConflict(thrown) && runs.lockConflicts < LOCK_CONFLICT_RERUNS && !ctx.stopping() && !ctx.closed(channel)) {
      runs.lockConflicts += 1;
      ctx.stats.lockConflicts += 1;
      ctx.metrics.lockConflicts.inc({ consumer: name });
      ctx.logger.debug(`consumer ${name}: message ${meta.messageId} met a lock conflict; it runs again at once`, { error: describeError(thrown) });
      return 'again';
    }
    return routeFailure(ctx, channel, message, delivery, meta, thrown);
  }
  crashPoint('inbox.after-commit-before-ack');
  ack(channel, message);
  if (park.kind === 'released' && park.last) await liftPark(ctx, park);
  const seconds = (performance.now() - started) / 1000;
  if (outcome.kind === 'duplicate') {
    ctx.stats.duplicates += 1;
    ctx.metrics.duplicates.inc({ consumer: name });
    ctx.notify('duplicate', meta);
    if (isConflicting(outcome, receivedHash)) countConflict(ctx, meta, outcome.storedHash, receivedHash);
  } else {
    ctx.stats.handled += 1;
    ctx.metrics.handled.inc({ consumer: name, type: meta.type });
    ctx.metrics.handlerSeconds.observe(seconds, { consumer: name });
    ctx.notify('handled', meta, seconds * 1000);
  }
  return 'settled';
}

/**
 * The last message a release sent back is handled (or was already): the key flows again, unless
 * more arrived behind the head meanwhile (see ParkedKeys.lift). A failure here leaves the park
 * releasing: the next delivery of the key finds it so and tries again.
 */
async function liftPark<TTx>(ctx: ConsumerContext<TTx>, park: Extract<ParkCheck, { kind: 'released' }>): Promise<void> {
  try {
    // A park left releasing after its last message would hold the key for good: a link reset is waited out.
    const lifted = await retryTransient(() => ctx.parks.lift(park.keyHash, park.head));
    ctx.logger.info(`consumer ${ctx.options.name}: the key parked behind ${park.head} ${lifted ? 'flows again' : 'stays parked: messages arrived behind its head during the release'}`);
  } catch (error) {
    ctx.logger.warn(`consumer ${ctx.options.name}: could not lift the park behind ${park.head}`, { error: describeError(error) });
  }
}

async function parkCheckFailed<TTx>(ctx: ConsumerContext<TTx>, channel: ConfirmChannel, message: ConsumeMessage, error: unknown): Promise<Routed> {
  ctx.logger.warn(`consumer ${ctx.options.name}: could not read the parked keys; the delivery waits`, { error: describeError(error) });
  if (!ctx.stopping() && !ctx.closed(channel)) {
    await sleep(REQUEUE_PAUSE_MS, undefined, { ref: false });
    if (!ctx.stopping() && !ctx.closed(channel)) return 'again';
  }
  await requeueAfterPause(ctx, channel, message);
  return 'settled';
}

function isConflicting(outcome: TransactionOutcome, receivedHash: string): outcome is { kind: 'duplicate'; storedHash: string } {
  // A row written before migration 6 has no hash: nothing to compare, a plain duplicate.
  return outcome.kind === 'duplicate' && outcome.storedHash !== null && outcome.storedHash !== receivedHash;
}

function outcomeName(outcome: TransactionOutcome, receivedHash: string): string {
  return isConflicting(outcome, receivedHash) ? 'conflicting-duplicate' : outcome.kind;
}

/**
 * Same id, another body: the first one won (its effect is committed) and this one is acked like
 * any duplicate, but counted, logged with both hashes and emitted, since a producer reusing an id
 * for another payload loses that payload.
 */
function countConflict<TTx>(ctx: ConsumerContext<TTx>, meta: MessageMetadata, storedHash: string, receivedHash: string): void {
  const { name } = ctx.options;
  ctx.stats.conflictingDuplicates += 1;
  ctx.metrics.conflictingDuplicates.inc({ consumer: name });
  ctx.logger.warn(`consumer ${name}: message ${meta.messageId} is a duplicate with another payload; acked, the first one handled stays`, {
    storedHash,
    receivedHash,
    type: meta.type,
  });
  ctx.notify('conflictingDuplicate', { message: meta, storedHash, receivedHash });
}

/**
 * A delivery that came by a delay queue's route (the default exchange, routed to the work queue)
 * without a valid seal: someone published it there with made-up retry state. It is read as a
 * first attempt with its real route; counted and logged here.
 */
function countForged<TTx>(ctx: ConsumerContext<TTx>, message: ConsumeMessage): void {
  const { name } = ctx.options;
  const rawId: unknown = message.properties.messageId;
  const messageId = typeof rawId === 'string' ? rawId.slice(0, 100) : '';
  ctx.stats.forged += 1;
  ctx.metrics.forged.inc({ consumer: name });
  ctx.logger.warn(`consumer ${name}: message ${JSON.stringify(messageId)} came by the delay-queue route without a valid seal; its retry state is ignored (handled as attempt 1)`);
  ctx.notify('forged', { messageId, queue: ctx.options.queue });
}

async function transaction<TTx>(ctx: ConsumerContext<TTx>, checked: AcceptedDelivery<TTx>, meta: MessageMetadata, receivedHash: string): Promise<TransactionOutcome> {
  const controller = new AbortController();
  ctx.aborts.add(controller);
  try {
    return await ctx.commit({
      db: ctx.options.db,
      inboxTable: ctx.inboxTable,
      consumer: ctx.options.name,
      binding: checked.binding,
      body: checked.body,
      payloadHash: receivedHash,
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
    version: checked.version,
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
