import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { describeError, type Logger } from '@mailroom/core';
import { backoffDelay, crashPoint, decodeDeadLetter, publishConfirmed, type EnvelopeSeal } from '@mailroom/core/internal';
import type { DeadLetterStore } from './dead-letter-store.js';
import type { SinkMetrics, StoredForm } from './sink-metrics.js';
import { minimalDeadLetter, storableDeadLetter, type SinkLimits, type StorableDeadLetter } from './storable-dead-letter.js';
import { storeFailureCause, type StoreFailureCause } from './store-failure.js';

/** What the sink says about one dead letter. */
export interface StoredDeadLetterInfo {
  messageId: string;
  /** The consumer's queue that gave up on it (`unsealed` when no mailroom consumer wrote it). */
  source: string;
  reason: string;
}

/** Counts of a sink since it was made, each counted once its outcome is final (after the commit, or the broker's confirm). */
export interface DeadLetterSinkStats {
  /** Dead letters stored, in full or minimal form (a redelivered one counts again; its row is the same). */
  stored: number;
  /** Tries to store a dead letter that failed (each followed by a wait, a smaller form, or parking). */
  failures: number;
  /** Dead letters without a valid mailroom seal (stored as source `unsealed`). */
  unsealed: number;
  /** Dead letters the sink changed to store them (see `DeadLetter.changes`). */
  changed: number;
  /** Dead letters stored in minimal form, after the store refused the full row. */
  minimal: number;
  /** Dead letters moved to the parked queue, after the store refused even the minimal row. */
  parked: number;
}

/** How the sink's deliveries report, and what they need of the sink. */
export interface DeliveryHooks {
  store: DeadLetterStore;
  seal(): EnvelopeSeal;
  limits: SinkLimits;
  parkedQueue: string;
  logger: Logger;
  metrics: SinkMetrics;
  /** Aborted by stop(): waits end, the delivery stays unacked and the broker gives it back. */
  signal: AbortSignal;
  /** False once the delivery's channel is no longer the subscription's (it will be redelivered). */
  isCurrent(channel: ConfirmChannel): boolean;
  stored(info: StoredDeadLetterInfo): void;
  storeFailed(info: StoredDeadLetterInfo & { error: string; cause: StoreFailureCause }): void;
  parked(info: StoredDeadLetterInfo & { error: string }): void;
}

/** The backoff of a store the database is not taking, and of a park the broker is not confirming. */
const RETRY_BACKOFF = { initialMs: 500, maxMs: 10_000 } as const;
/** How long the broker gets to confirm a parked copy. */
const PARK_CONFIRM_MS = 10_000;

/** The properties of the parked copy: the message as it arrived (user-id aside, which the broker checks). */
function parkedProperties(message: ConsumeMessage): Options.Publish {
  const p = message.properties;
  const options: Options.Publish = { persistent: true, headers: { ...(p.headers ?? {}) } };
  if (typeof p.messageId === 'string') options.messageId = p.messageId;
  if (typeof p.type === 'string') options.type = p.type;
  if (typeof p.contentType === 'string') options.contentType = p.contentType;
  if (typeof p.contentEncoding === 'string') options.contentEncoding = p.contentEncoding;
  if (typeof p.correlationId === 'string') options.correlationId = p.correlationId;
  if (typeof p.timestamp === 'number') options.timestamp = p.timestamp;
  if (typeof p.appId === 'string') options.appId = p.appId;
  return options;
}

/**
 * Stores one message of the dead-letter queue, with bounded work and never a requeue: the row is
 * made storable (see `storableDeadLetter`); a refusal of its content is answered with the minimal
 * row, and a refusal of that with parking the message (as it arrived) in `<queue>.parked`; a
 * database that is away is waited for in place with a capped backoff (the delivery stays unacked
 * and holds one prefetch slot) until it is back or the sink stops. Acks only after the commit or
 * the broker's confirm of the parked copy.
 */
export async function storeDelivery(hooks: DeliveryHooks, stats: DeadLetterSinkStats, channel: ConfirmChannel, message: ConsumeMessage): Promise<void> {
  let candidate: StorableDeadLetter;
  let info: StoredDeadLetterInfo;
  try {
    const { sealed, ...decoded } = decodeDeadLetter(message, hooks.seal());
    candidate = storableDeadLetter(decoded, message.content, hooks.limits);
    info = { messageId: candidate.deadLetter.messageId, source: candidate.deadLetter.source, reason: candidate.deadLetter.reason };
    if (sealed === false) {
      stats.unsealed += 1;
      hooks.metrics.unsealed();
      hooks.logger.warn('dead-letter sink: a message without a valid mailroom seal is stored as unsealed (never replayed)', { messageId: info.messageId });
    }
  } catch (error) {
    // Nothing the codec should ever throw on; if it does, the message is moved aside, not looped on.
    const raw: unknown = message.properties.messageId;
    return park(hooks, stats, channel, message, { messageId: typeof raw === 'string' ? raw : '', source: 'unknown', reason: 'unknown' }, describeError(error));
  }
  let form: StoredForm = 'full';
  for (let waits = 0; ; ) {
    if (hooks.signal.aborted || !hooks.isCurrent(channel)) return;
    try {
      await hooks.store.record(candidate.deadLetter);
      break;
    } catch (error) {
      const cause = storeFailureCause(error);
      const text = describeError(error);
      stats.failures += 1;
      hooks.metrics.storeFailed(cause);
      hooks.storeFailed({ ...info, error: text, cause });
      if (cause === 'content') {
        if (form === 'minimal') return park(hooks, stats, channel, message, info, text);
        hooks.logger.warn('dead-letter sink: the store refused a dead letter; storing it minimally', { messageId: info.messageId, error: text });
        form = 'minimal';
        candidate = minimalDeadLetter(candidate, text);
        continue;
      }
      waits += 1;
      const delay = backoffDelay(RETRY_BACKOFF, waits);
      hooks.logger.error(`dead-letter sink: cannot store a dead letter (the database is away or refuses the sink); trying again in ${delay} ms`, {
        messageId: info.messageId,
        error: text,
      });
      if (!(await pause(delay, hooks.signal))) return;
    }
  }
  stats.stored += 1;
  hooks.metrics.stored(form);
  if (form === 'minimal') stats.minimal += 1;
  if (candidate.kinds.size > 0) {
    stats.changed += 1;
    hooks.metrics.changed(candidate.kinds);
    // The kinds only: the notes name headers a sender chose (see the row, or `mailroom dlq show`).
    hooks.logger.warn('dead-letter sink: stored a dead letter with changes', { messageId: info.messageId, changes: [...candidate.kinds].join(', ') });
  }
  hooks.stored(info);
  crashPoint('dlq.sink.after-commit-before-ack');
  ack(channel, message);
}

/** Moves the message, as it arrived, to the parked queue (confirmed), then acks it. */
async function park(
  hooks: DeliveryHooks,
  stats: DeadLetterSinkStats,
  channel: ConfirmChannel,
  message: ConsumeMessage,
  info: StoredDeadLetterInfo,
  why: string,
): Promise<void> {
  for (let attempt = 1; !hooks.signal.aborted && hooks.isCurrent(channel); attempt++) {
    const deadline = sleep(PARK_CONFIRM_MS, undefined, { ref: false });
    const { outcome } = publishConfirmed(channel, '', hooks.parkedQueue, message.content, parkedProperties(message), { deadline });
    const result = await outcome;
    if (result.kind === 'confirmed') {
      stats.parked += 1;
      hooks.metrics.parked();
      hooks.logger.error(`dead-letter sink: the store refused a dead letter even in minimal form; parked in ${hooks.parkedQueue}`, {
        messageId: info.messageId,
        error: why,
      });
      hooks.parked({ ...info, error: why });
      ack(channel, message);
      return;
    }
    const delay = backoffDelay(RETRY_BACKOFF, attempt);
    hooks.logger.error(`dead-letter sink: cannot park a dead letter in ${hooks.parkedQueue} (${result.error}); trying again in ${delay} ms`, { messageId: info.messageId });
    if (!(await pause(delay, hooks.signal))) return;
  }
}

/** Waits `ms`; false when the sink stopped meanwhile. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

function ack(channel: ConfirmChannel, message: ConsumeMessage): void {
  try {
    channel.ack(message);
  } catch {
    // The channel is gone: the message comes back and the upsert makes it harmless.
  }
}

