import type { MetricsRegistry } from '@mailroom/core';
import type { DeadLetterGroup } from './dead-letter.js';

/** The gauge's labels; prom-client refuses a label it was not told about. */
const LABEL_NAMES = ['group', 'source', 'reason'] as const;

/** Failure groups with a series of their own by default; the rest are summed in `group="other"`. */
export const DEAD_LETTER_SERIES = 50;

/** Options of {@link registerDeadLetterMetrics}. */
export interface DeadLetterMetricsOptions {
  /**
   * Failure groups with a series of their own (the largest by pending count, then by count); the
   * rest are summed in one series `group="other"` (with `source` and `reason` empty), so hostile
   * messages that each make a group of their own cannot blow up the scrape. Default: 50.
   */
  maxSeries?: number;
}

/**
 * The one definition of mailroom's dead-letter gauges, used by the store's `registerMetrics` and by
 * the sidecar (`mailroom relay`) alike, so one registry holding both has each family once:
 *
 * - `mailroom_dead_letters{group,source,reason}`: dead letters not replayed, by failure group
 *   (the largest `maxSeries` groups, the rest as `group="other"`);
 * - `mailroom_dead_letters_stored`: every dead letter in the store, replayed or not.
 *
 * Both are read from `groups` when the registry renders (one call per render: pass a cached reader
 * to bound what a scrape costs, as the sidecar does). A second registration in the same registry
 * changes nothing (the first reader stays).
 */
export function registerDeadLetterMetrics(registry: MetricsRegistry, groups: () => Promise<DeadLetterGroup[]>, options: DeadLetterMetricsOptions = {}): void {
  const maxSeries = options.maxSeries ?? DEAD_LETTER_SERIES;
  if (!Number.isSafeInteger(maxSeries) || maxSeries < 1) throw new RangeError(`maxSeries must be a positive integer (got ${String(maxSeries)})`);
  // One reading serves both gauges of a render: prom-client collects them one after the other.
  let reading: Promise<DeadLetterGroup[]> | undefined;
  const read = (): Promise<DeadLetterGroup[]> => {
    reading ??= groups().finally(() => {
      setImmediate(() => (reading = undefined));
    });
    return reading;
  };
  registry.gauge(
    'mailroom_dead_letters',
    'Dead letters not replayed, by failure group (the largest groups; the rest summed as group="other").',
    async () => {
      const sorted = [...(await read())].sort((a, b) => b.pending - a.pending || b.count - a.count);
      // prom-client writes labels in the order of the object: alphabetical, as Prometheus shows them.
      const series = sorted.slice(0, maxSeries).map((g) => ({ labels: { group: g.fingerprint, reason: g.reason, source: g.source }, value: g.pending }));
      if (sorted.length > maxSeries) series.push({ labels: { group: 'other', reason: '', source: '' }, value: sorted.slice(maxSeries).reduce((n, g) => n + g.pending, 0) });
      return series;
    },
    LABEL_NAMES,
  );
  registry.gauge('mailroom_dead_letters_stored', 'Dead letters in the store, replayed or not.', async () => (await read()).reduce((n, g) => n + g.count, 0));
}
