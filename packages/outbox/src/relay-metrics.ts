import type { Counter, MetricsRegistry } from '@mailroom/core';
import { LATENCY_BUCKETS } from '@mailroom/core/internal';
import type { Backlog } from './backlog-probe.js';
import type { Settlement } from './batch-settlement.js';
import type { FailureCause, RelayLink, RelayLinks } from './link-health.js';
import type { RelayStats } from './relay-events.js';
import type { ScheduledCount } from './scheduled-count.js';

/** The relay's Prometheus metrics and its `stats`; work is counted only once its batch committed. */
export interface RelayMetrics {
  /** A copy of the counts so far. */
  readonly stats: RelayStats;
  /** Counts a batch whose transaction committed. */
  committed(settlement: Settlement): void;
  /** Counts a batch that failed (rolled back, or never began), by the link it failed on. */
  batchFailed(cause: FailureCause): void;
  /** Counts the start of an outage of a link. */
  outage(link: RelayLink): void;
  /** Counts an event listener that threw. */
  listenerError(event: string): void;
  /** Counts scheduled rows moved into the outbox (a committed move), and those the outbox had already. */
  scheduledMoved(rows: number, duplicates: number): void;
}

/** What the relay's gauges read when the registry renders. */
export interface RelayProbes {
  /** The backlog, bounded and cached (backlog-probe.ts). */
  backlog(): Promise<Backlog>;
  /** The scheduled rows, bounded and cached like the backlog (scheduled-count.ts). */
  scheduled(): Promise<ScheduledCount>;
  ready(): boolean;
  links(): RelayLinks;
}

/** Declares the relay's metrics on `registry`. */
export function createRelayMetrics(registry: MetricsRegistry, probes: RelayProbes): RelayMetrics {
  const published = registry.counter('mailroom_relay_published_total', 'Outbox rows published and confirmed by the broker.');
  const returned = registry.counter('mailroom_relay_returned_total', 'Publishes the broker returned as unroutable (mandatory).');
  const nacked = registry.counter('mailroom_relay_nacked_total', 'Publishes the broker nacked.');
  const failed = registry.counter('mailroom_relay_publish_failures_total', 'Publishes lost to a closed channel, a lost connection or a confirm timeout.');
  const deadLettered = registry.counter('mailroom_relay_dead_lettered_total', 'Rows moved to the dead-letter store, by reason.', ['reason']);
  const deadLetterWriteFailed = registry.counter(
    'mailroom_relay_dead_letter_write_failures_total',
    'Rows that should have become dead letters but whose write failed (left in the outbox, retried later).',
  );
  const batches = registry.counter('mailroom_relay_batches_total', 'Batches committed.');
  const batchesFailed = registry.counter(
    'mailroom_relay_batches_failed_total',
    'Batches that failed (rolled back, or could not begin), by the link they failed on: postgres, rabbitmq or other.',
    ['link'],
  );
  const outages = registry.counter('mailroom_relay_outages_total', 'Outages of a link (postgres, rabbitmq): each counted once, when it begins.', ['link']);
  const listenerErrors = registry.counter('mailroom_relay_listener_errors_total', 'Relay event listeners that threw (caught and logged), by event.', ['event']);
  // Every link's series exists from the start, at 0, so a dashboard sees no gap before the first outage.
  for (const link of ['postgres', 'rabbitmq'] as const) {
    outages.inc({ link }, 0);
    batchesFailed.inc({ link }, 0);
  }
  const latency = registry.histogram('mailroom_relay_commit_to_confirm_seconds', 'Time from the outbox insert to the broker confirm.', LATENCY_BUCKETS);
  registry.gauge(
    'mailroom_outbox_backlog',
    'Rows waiting in the outbox (exact up to 10000, above it the planner estimate; read at most every 5 s).',
    async () => (await probes.backlog()).rows,
  );
  registry.gauge('mailroom_outbox_oldest_age_seconds', 'Age of the oldest unpublished outbox row (read at most every 5 s).', async () => (await probes.backlog()).oldestAgeSeconds);
  const scheduledMoved = registry.counter('mailroom_relay_scheduled_moved_total', 'Scheduled rows moved into the outbox when they fell due.');
  const scheduledDuplicates = registry.counter(
    'mailroom_relay_scheduled_duplicates_total',
    'Scheduled rows whose message id the outbox held already when they fell due (the same message enqueued twice): not inserted twice.',
  );
  const lateness = registry.histogram(
    'mailroom_relay_scheduled_lateness_seconds',
    "Scheduled rows: time from the row's due time (deliverAt) to the broker's confirm of its publish.",
    LATENCY_BUCKETS,
  );
  registry.gauge(
    'mailroom_outbox_scheduled',
    'Scheduled messages waiting for their time (exact up to 10000, above it the planner estimate; read at most every 5 s).',
    async () => (await probes.scheduled()).rows,
  );
  registry.gauge(
    'mailroom_outbox_scheduled_overdue_seconds',
    'How long the earliest scheduled message is past its due time (0 when none is due; read at most every 5 s). Above a second or so, no relay moves scheduled messages.',
    async () => (await probes.scheduled()).overdueSeconds,
  );
  registry.gauge('mailroom_relay_ready', 'Whether the relay can publish (1) or not (0).', async () => (probes.ready() ? 1 : 0));
  registry.gauge(
    'mailroom_relay_link_up',
    'Whether a link works (1) or not (0): postgres, rabbitmq.',
    async () => {
      const links = probes.links();
      return (['postgres', 'rabbitmq'] as const).map((link) => ({ labels: { link }, value: links[link].up ? 1 : 0 }));
    },
    ['link'],
  );

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
      add(deadLetterWriteFailed, s.deadLetterWriteFailures.length);
      for (const d of s.deadLetters) deadLettered.inc({ reason: d.reason });
      for (const seconds of s.latencies) latency.observe(seconds);
      for (const seconds of s.lateness) lateness.observe(seconds);
      batches.inc();
    },
    batchFailed(cause) {
      batchesFailed.inc({ link: cause });
    },
    outage(link) {
      outages.inc({ link });
    },
    listenerError(event) {
      listenerErrors.inc({ event });
    },
    scheduledMoved(rows, duplicates) {
      add(scheduledMoved, rows);
      add(scheduledDuplicates, duplicates);
    },
  };
}
