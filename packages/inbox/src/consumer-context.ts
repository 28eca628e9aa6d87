import type { ConfirmChannel } from 'amqplib';
import type { Logger } from '@mailroom/core';
import type { EnvelopeSeal } from '@mailroom/core/internal';
import type { ConsumerEvents, ConsumerStats } from './consumer-events.js';
import type { ConsumerMetrics } from './consumer-metrics.js';
import type { ResolvedConsumerOptions } from './consumer-options.js';
import type { HandlerTransaction, TransactionOutcome } from './handler-transaction.js';
import type { ParkedKeys } from './parked-keys.js';

/**
 * What the per-delivery work (validation, handler transaction, failure routing) shares with the
 * consumer handle that owns it. Internal: the handle builds one and nothing else sees it.
 */
export interface ConsumerContext<TTx> {
  /** The consumer's options, defaults filled in. */
  readonly options: ResolvedConsumerOptions<TTx>;
  /** Seals retry and dead-letter copies and verifies retry state (loaded by start(), before any delivery). */
  readonly seal: EnvelopeSeal;
  /** The quoted `<schema>.inbox` table. */
  readonly inboxTable: string;
  /** The handle's stats, counted here once the work is done. */
  readonly stats: ConsumerStats;
  /** The consumer's metrics. */
  readonly metrics: ConsumerMetrics;
  /** Where problems are logged. */
  readonly logger: Logger;
  /** Emits an event; a listener that throws is logged, never turned into a nack of an acked delivery. */
  notify<K extends keyof ConsumerEvents>(event: K, ...args: ConsumerEvents[K]): void;
  /** The abort controllers of the handlers in flight (stop() aborts them when its wait runs out). */
  readonly aborts: Set<AbortController>;
  /**
   * Runs one delivery's handler transaction and resolves once it committed: with group commit
   * (`maxBatchSize` > 1) in a transaction shared with the deliveries that arrived meanwhile,
   * each in a savepoint; otherwise alone (`runHandlerTransaction`).
   */
  commit(t: HandlerTransaction<TTx>): Promise<TransactionOutcome>;
  /** The parked keys of the queue (sequenced dead letters): consulted only with ordering on. */
  readonly parks: ParkedKeys;
  /** True once stop() began. */
  stopping(): boolean;
  /** True when `channel` closed: its unacked deliveries come back from the broker, in queue order. */
  closed(channel: ConfirmChannel): boolean;
}
