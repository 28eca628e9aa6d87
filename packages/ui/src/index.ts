// The public entry of @mailroom/ui: the dead-letter workbench, as a handler for your own Node
// HTTP server (`createWorkbench`) or a server of its own (`startWorkbench`, what `mailroom ui` runs).
export { createWorkbench } from './workbench.js';
export type { Workbench } from './workbench.js';
export { workbenchOptionsSchema } from './workbench-options.js';
export type { WorkbenchOptions } from './workbench-options.js';
export { startWorkbench, isLoopback } from './start-workbench.js';
export type { StartWorkbenchOptions, RunningWorkbench } from './start-workbench.js';
export type { ReplayJobStatus, ReplayJobState } from './replay-job.js';
