import type { MetricsRegistry } from '@mailroom/core';
import { registerDeadLetterMetrics, type DeadLetterGroup } from '@mailroom/dlq';
import { cachedReading } from './cached-reading.js';

/** How often the sidecar reads the dead-letter groups, in ms (a grouped scan of `dead_letters`). */
export const DEAD_LETTER_CACHE_MS = 30_000;

/** How long a scrape waits for that reading, in ms. */
export const DEAD_LETTER_TIMEOUT_MS = 2_000;

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
 * The dead-letter gauges of the sidecar: `@mailroom/dlq`'s own definition
 * (`registerDeadLetterMetrics`: `mailroom_dead_letters{group,source,reason}` and
 * `mailroom_dead_letters_stored`, the same families a service gets from `store.registerMetrics`),
 * fed by one grouped query read at most every {@link DEAD_LETTER_CACHE_MS} and given up after
 * {@link DEAD_LETTER_TIMEOUT_MS}, so scrapes cost no scan of the store.
 */
export function registerDeadLetterGauges(registry: MetricsRegistry, groups: () => Promise<DeadLetterGroup[]>): void {
  registerDeadLetterMetrics(registry, cachedReading(groups, { cacheMs: DEAD_LETTER_CACHE_MS, timeoutMs: DEAD_LETTER_TIMEOUT_MS }));
}
