export { enqueue } from './enqueue.js';
export type { EnqueueOptions } from './enqueue.js';
export { createRelay } from './relay.js';
export type { Relay, RelayEvents, RelayCounters, BatchSummary } from './relay.js';
export type { RelayOptions } from './relay-options.js';
export { notifyChannel } from './names.js';
