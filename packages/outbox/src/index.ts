// The public entry of @mailroom/outbox: `enqueue` in the caller's transaction, and the relay.
export { enqueue } from './enqueue.js';
export type { EnqueueOptions } from './enqueue.js';
export { createRelay } from './relay.js';
export type { Relay } from './relay.js';
export type { RelayEvents, RelayStats, RelayDeadLetter, RelayFailure, BatchSummary } from './relay-events.js';
export type { RelayLinks, LinkStatus } from './link-health.js';
export { relayOptionsSchema } from './relay-options.js';
export type { RelayOptions } from './relay-options.js';
export { notifyChannel } from './names.js';
