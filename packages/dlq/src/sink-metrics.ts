import type { MetricsRegistry } from '@mailroom/core';
import { STORE_CHANGE_KINDS, type StoreChangeKind } from './storable-dead-letter.js';
import type { StoreFailureCause } from './store-failure.js';

/** How a dead letter was stored: whole (perhaps with changes), or minimally after the store refused the whole row. */
export type StoredForm = 'full' | 'minimal';

/** The sink's counters; each is a no-op without a registry. */
export interface SinkMetrics {
  stored(form: StoredForm): void;
  unsealed(): void;
  changed(kinds: Iterable<StoreChangeKind>): void;
  storeFailed(cause: StoreFailureCause): void;
  parked(): void;
}

/**
 * The sink's counters in `registry`: every path where a dead letter is delayed (a failed store),
 * changed, doubted (unsealed) or moved aside (parked) is counted. Label names are declared.
 */
export function sinkMetrics(registry: MetricsRegistry | undefined): SinkMetrics {
  if (registry === undefined) return { stored() {}, unsealed() {}, changed() {}, storeFailed() {}, parked() {} };
  const stored = registry.counter('mailroom_dead_letter_sink_stored_total', 'Dead letters the sink stored (committed), by form: full, or minimal after the store refused the full row.', ['form']);
  const unsealed = registry.counter(
    'mailroom_dead_letter_sink_unsealed_total',
    'Messages on the dead-letter queue without a valid mailroom seal: stored as source "unsealed", never replayed.',
  );
  const changed = registry.counter(
    'mailroom_dead_letter_sink_changed_total',
    `Dead letters the sink changed to store them, by kind of change (${STORE_CHANGE_KINDS.join(', ')}).`,
    ['change'],
  );
  const failed = registry.counter(
    'mailroom_dead_letter_sink_store_failures_total',
    'Tries to store a dead letter that failed, by cause: environment (database away or refusing the sink: retried in place with a backoff) or content (the row: stored minimally, then parked).',
    ['cause'],
  );
  const parked = registry.counter(
    'mailroom_dead_letter_sink_parked_total',
    'Dead letters the store refused even in minimal form, moved as they arrived to the parked queue (<queue>.parked).',
  );
  return {
    stored: (form) => stored.inc({ form }),
    unsealed: () => unsealed.inc(),
    changed: (kinds) => {
      for (const change of kinds) changed.inc({ change });
    },
    storeFailed: (cause) => failed.inc({ cause }),
    parked: () => parked.inc(),
  };
}
