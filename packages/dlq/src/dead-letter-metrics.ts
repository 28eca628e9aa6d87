import type { MetricsRegistry } from '@mailroom/core';
import type { DeadLetterGroup } from './dead-letter.js';

/** The gauge's labels; prom-client refuses a label it was not told about. */
const LABEL_NAMES = ['group', 'source', 'reason'] as const;

/**
 * Adds the gauge `mailroom_dead_letters{group,source,reason}` (dead letters not replayed, by
 * failure group) to `registry`. It is read when the registry renders, so a scrape sees the
 * store as it is, whichever process wrote to it.
 */
export function registerDeadLetterGauge(registry: MetricsRegistry, groups: () => Promise<DeadLetterGroup[]>): void {
  registry.gauge(
    'mailroom_dead_letters',
    'Dead letters not replayed, by failure group.',
    // prom-client writes labels in the order of the object: alphabetical, as Prometheus shows them.
    async () => (await groups()).map((g) => ({ labels: { group: g.fingerprint, reason: g.reason, source: g.source }, value: g.pending })),
    LABEL_NAMES,
  );
}
