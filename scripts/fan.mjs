// The fan (DESIGN.md, "Packages"): the workspace packages each package may depend on and import.
// eslint.config.js enforces it on imports, scripts/check-fan.mjs on package.json.
export const FAN = {
  core: [],
  outbox: ['@mailroom/core'],
  inbox: ['@mailroom/core'],
  dlq: ['@mailroom/core', '@mailroom/outbox'],
  saga: ['@mailroom/core', '@mailroom/outbox', '@mailroom/inbox'],
  chaos: ['@mailroom/core', '@mailroom/outbox', '@mailroom/inbox', '@mailroom/dlq', '@mailroom/saga'],
  // The workbench reads and writes dead letters only through the dlq package's public API, and
  // the outbox's state (backlog, relays) only through the outbox's.
  ui: ['@mailroom/core', '@mailroom/outbox', '@mailroom/dlq'],
  cli: ['@mailroom/core', '@mailroom/outbox', '@mailroom/inbox', '@mailroom/dlq', '@mailroom/saga', '@mailroom/chaos', '@mailroom/ui'],
};
