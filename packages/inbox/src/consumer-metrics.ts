import { MetricsRegistry, type Counter, type Histogram } from '@mailroom/core';
import { LATENCY_BUCKETS } from '@mailroom/core/internal';

/** The consumer's metrics; every path that drops, delays or duplicates a message has one. */
export interface ConsumerMetrics {
  /** `mailroom_inbox_handled_total{consumer,type}`: handler transactions committed. */
  handled: Counter;
  /** `mailroom_inbox_duplicates_total{consumer}`: duplicates acked without the handler. */
  duplicates: Counter;
  /** `mailroom_inbox_conflicting_duplicates_total{consumer}`: duplicates with another payload (also counted as duplicates). */
  conflictingDuplicates: Counter;
  /** `mailroom_inbox_forged_total{consumer}`: deliveries by the delay-queue route with retry headers but no valid seal. */
  forged: Counter;
  /** `mailroom_inbox_trimmed_copies_total{consumer}`: dead-letter copies sent without some of the delivery's headers (they did not fit). */
  trimmedCopies: Counter;
  /** `mailroom_inbox_failures_total{consumer,type}`: handler failures. */
  failures: Counter;
  /** `mailroom_inbox_retries_total{consumer}`: copies sent to a delay queue. */
  retries: Counter;
  /** `mailroom_inbox_dead_lettered_total{consumer,reason}`: copies sent to the dead letters. */
  deadLettered: Counter;
  /** `mailroom_inbox_requeued_total{consumer}`: deliveries given back after an infrastructure error. */
  requeued: Counter;
  /** `mailroom_inbox_lock_conflicts_total{consumer}`: handler transactions undone by a deadlock or serialization failure and run again at once. */
  lockConflicts: Counter;
  /** `mailroom_inbox_broken_batches_total{consumer}`: group-commit batches whose shared transaction broke (their deliveries ran again one by one, or were requeued). */
  brokenBatches: Counter;
  /** `mailroom_inbox_handler_seconds{consumer}`: delivery to commit of handled messages. */
  handlerSeconds: Histogram;
}

// Several consumers in one process share a registry: each metric is registered once per registry.
const byRegistry = new WeakMap<MetricsRegistry, ConsumerMetrics>();

/** The consumer metrics of `registry` (a private registry when none is given). */
export function consumerMetrics(registry: MetricsRegistry = new MetricsRegistry()): ConsumerMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const metrics: ConsumerMetrics = {
    handled: registry.counter('mailroom_inbox_handled_total', 'Deliveries whose handler transaction committed.', ['consumer', 'type']),
    duplicates: registry.counter('mailroom_inbox_duplicates_total', 'Duplicate deliveries acked without running the handler.', ['consumer']),
    conflictingDuplicates: registry.counter(
      'mailroom_inbox_conflicting_duplicates_total',
      'Duplicate deliveries whose body differs from the one handled under their id (acked; the first one stays).',
      ['consumer'],
    ),
    forged: registry.counter('mailroom_inbox_forged_total', 'Deliveries by the delay-queue route with retry headers but no valid seal (retry state ignored).', ['consumer']),
    trimmedCopies: registry.counter('mailroom_inbox_trimmed_copies_total', "Dead-letter copies sent without some of the delivery's headers, which did not fit.", ['consumer']),
    failures: registry.counter('mailroom_inbox_failures_total', 'Handler failures (each one retried or dead-lettered).', ['consumer', 'type']),
    retries: registry.counter('mailroom_inbox_retries_total', 'Deliveries sent to a delay queue for another attempt.', ['consumer']),
    deadLettered: registry.counter('mailroom_inbox_dead_lettered_total', 'Deliveries sent to the dead letters, by reason.', ['consumer', 'reason']),
    requeued: registry.counter('mailroom_inbox_requeued_total', 'Deliveries given back to the queue after a database or broker error.', ['consumer']),
    lockConflicts: registry.counter(
      'mailroom_inbox_lock_conflicts_total',
      'Handler transactions PostgreSQL undid for a deadlock or serialization failure; each ran again at once (no attempt used).',
      ['consumer'],
    ),
    brokenBatches: registry.counter(
      'mailroom_inbox_broken_batches_total',
      'Group-commit batches whose shared transaction broke (a handler ended it, COMMIT was refused, the connection died); their deliveries ran again one by one or were requeued.',
      ['consumer'],
    ),
    handlerSeconds: registry.histogram('mailroom_inbox_handler_seconds', 'Time from delivery to commit of handled messages.', LATENCY_BUCKETS, ['consumer']),
  };
  byRegistry.set(registry, metrics);
  return metrics;
}
