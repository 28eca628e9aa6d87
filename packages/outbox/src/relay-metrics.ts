import type { Counter, MetricsRegistry } from '@mailroom/core';
import { LATENCY_BUCKETS } from '@mailroom/core/internal';
import type { Settlement } from './batch-settlement.js';
import type { RelayStats } from './relay-events.js';

/** The relay's Prometheus metrics and its `stats`, both moved only by committed batches. */
export interface RelayMetrics {
  /** A copy of the counts so far. */
  readonly stats: RelayStats;
  /** Counts a batch whose transaction committed. */
  committed(settlement: Settlement): void;
  /** Counts a batch that rolled back (its rows are claimed again). */
  rolledBack(): void;
}

/** What the relay's gauges read when the registry renders. */
export interface RelayProbes {
  backlog(): Promise<{ rows: number; oldestAgeSeconds: number }>;
  ready(): boolean;
}

/** Declares the relay's metrics on `registry`. */
export function createRelayMetrics(registry: MetricsRegistry, probes: RelayProbes): RelayMetrics {
  const published = registry.counter('mailroom_relay_published_total', 'Outbox rows published and confirmed by the broker.');
  const returned = registry.counter('mailroom_relay_returned_total', 'Publishes the broker returned as unroutable (mandatory).');
  const nacked = registry.counter('mailroom_relay_nacked_total', 'Publishes the broker nacked.');
  const failed = registry.counter('mailroom_relay_publish_failures_total', 'Publishes lost to a closed channel, a lost connection or a confirm timeout.');
  const deadLettered = registry.counter('mailroom_relay_dead_lettered_total', 'Rows moved to the dead-letter store, by reason.', ['reason']);
  const batches = registry.counter('mailroom_relay_batches_total', 'Batches committed.');
  const rolledBack = registry.counter('mailroom_relay_batches_failed_total', 'Batches rolled back (their rows are published again).');
  const latency = registry.histogram('mailroom_relay_commit_to_confirm_seconds', 'Time from the outbox insert to the broker confirm.', LATENCY_BUCKETS);
  registry.gauge('mailroom_outbox_backlog', 'Rows waiting in the outbox.', async () => (await probes.backlog()).rows);
  registry.gauge('mailroom_outbox_oldest_age_seconds', 'Age of the oldest unpublished outbox row.', async () => (await probes.backlog()).oldestAgeSeconds);
  registry.gauge('mailroom_relay_ready', 'Whether the relay can publish (1) or not (0).', async () => (probes.ready() ? 1 : 0));

  const stats: RelayStats = { published: 0, returned: 0, nacked: 0, failed: 0, deadLettered: 0 };
  // Zero increments are skipped: most batches have no returns, nacks or failures.
  const add = (counter: Counter, n: number): void => {
    if (n > 0) counter.inc(undefined, n);
  };
  return {
    get stats() {
      return { ...stats };
    },
    committed(s) {
      stats.published += s.published;
      stats.returned += s.returned;
      stats.nacked += s.nacked;
      stats.failed += s.failed;
      stats.deadLettered += s.deadLetters.length;
      add(published, s.published);
      add(returned, s.returned);
      add(nacked, s.nacked);
      add(failed, s.failed);
      for (const d of s.deadLetters) deadLettered.inc({ reason: d.reason });
      for (const seconds of s.latencies) latency.observe(seconds);
      batches.inc();
    },
    rolledBack() {
      rolledBack.inc();
    },
  };
}
