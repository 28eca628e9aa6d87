// The fan (DESIGN.md, "Packages"): the workspace packages each package may depend on and import.
// eslint.config.js enforces it on imports, scripts/check-fan.mjs on package.json.
export const FAN = {
  core: [],
  outbox: ['@mailroom/core'],
  inbox: ['@mailroom/core'],
  dlq: ['@mailroom/core', '@mailroom/outbox'],
  chaos: ['@mailroom/core', '@mailroom/outbox', '@mailroom/inbox', '@mailroom/dlq'],
  // The workbench reads and writes dead letters only through the dlq package's public API.
  ui: ['@mailroom/core', '@mailroom/dlq'],
  cli: ['@mailroom/core', '@mailroom/outbox', '@mailroom/inbox', '@mailroom/dlq', '@mailroom/chaos', '@mailroom/ui'],
};
