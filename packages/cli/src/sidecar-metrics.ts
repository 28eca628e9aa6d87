import type { MetricsRegistry } from '@mailroom/core';
import type { DeadLetterGroup } from '@mailroom/dlq';
import { cachedReading } from './cached-reading.js';

/** How often the sidecar reads the dead-letter groups, in ms (a grouped scan of `dead_letters`). */
export const DEAD_LETTER_CACHE_MS = 30_000;

/** How long a scrape waits for that reading, in ms. */
export const DEAD_LETTER_TIMEOUT_MS = 2_000;

/** Failure groups with a series of their own; the rest are summed in `group="other"`. */
export const DEAD_LETTER_SERIES = 50;

/** What the build-info metric says about the process. */
export interface BuildInfo {
  /** The mailroom version (the CLI's package.json). */
  version: string;
  /** The relay's instance name. */
  instance: string;
}

/**
 * `mailroom_build_info{version,node,platform,arch,instance} 1`: the usual Prometheus idiom for
 * "what is running", joined onto other series by `instance` in a dashboard.
 */
export function registerBuildInfo(registry: MetricsRegistry, info: BuildInfo): void {
  const labels = { arch: process.arch, instance: info.instance, node: process.version, platform: process.platform, version: info.version };
  registry.gauge(
    'mailroom_build_info',
    'The mailroom version, Node.js version, platform and instance of this process (always 1).',
    async () => [{ labels, value: 1 }],
    Object.keys(labels),
  );
}

/**
 * The dead-letter gauges of the sidecar: `mailroom_dead_letters{group,source,reason}` (not replayed,
 * by failure group, the largest {@link DEAD_LETTER_SERIES} groups and `other`) and
 * `mailroom_dead_letters_stored` (every dead letter in the store). Both come from one grouped
 * query read at most every {@link DEAD_LETTER_CACHE_MS}, so scrapes cost no scan of the store.
 */
export function registerDeadLetterGauges(registry: MetricsRegistry, groups: () => Promise<DeadLetterGroup[]>): void {
  const read = cachedReading(groups, { cacheMs: DEAD_LETTER_CACHE_MS, timeoutMs: DEAD_LETTER_TIMEOUT_MS });
  registry.gauge(
    'mailroom_dead_letters',
    `Dead letters not replayed, by failure group (the ${DEAD_LETTER_SERIES} largest groups, the rest as group="other"; read at most every 30 s).`,
    async () => {
      const all = await read();
      const sorted = [...all].sort((a, b) => b.pending - a.pending || b.count - a.count);
      const kept = sorted.slice(0, DEAD_LETTER_SERIES);
      const rest = sorted.slice(DEAD_LETTER_SERIES).reduce((n, g) => n + g.pending, 0);
      const series = kept.map((g) => ({ labels: { group: g.fingerprint, reason: g.reason, source: g.source }, value: g.pending }));
      if (sorted.length > DEAD_LETTER_SERIES) series.push({ labels: { group: 'other', reason: '', source: '' }, value: rest });
      return series;
    },
    ['group', 'source', 'reason'],
  );
  registry.gauge('mailroom_dead_letters_stored', 'Dead letters in the store, replayed or not (read at most every 30 s).', async () =>
    (await read()).reduce((n, g) => n + g.count, 0),
  );
}
