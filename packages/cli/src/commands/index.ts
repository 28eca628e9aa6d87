import type { Command } from '../command.js';

/** A command as `mailroom --help` lists it; its module is imported only when it runs. */
export interface CommandEntry {
  name: string;
  /** One line for `mailroom --help`. */
  summary: string;
  /** Imports the command's module (each pulls in only the packages it needs). */
  load(): Promise<Command>;
}

/**
 * Every command of the CLI, in the order `mailroom --help` lists them. Commands are imported
 * lazily: the relay sidecar does not compile the chaos harness, the inbox or the workbench at
 * start-up.
 */
export const commands: CommandEntry[] = [
  { name: 'migrate', summary: "create or update mailroom's tables (--dry-run prints the SQL it would run)", load: async () => (await import('./migrate.js')).migrateCommand },
  { name: 'relay', summary: 'run the outbox relay as a sidecar (configured by MAILROOM_* variables)', load: async () => (await import('./relay.js')).relayCommand },
  { name: 'dlq', summary: 'dead letters: list, show, groups, replay (through the outbox), discard, sink', load: async () => (await import('./dlq.js')).dlqCommand },
  { name: 'ui', summary: 'the dead-letter workbench in the browser (binds 127.0.0.1:7480 unless told otherwise)', load: async () => (await import('./ui.js')).uiCommand },
  {
    name: 'chaos',
    summary: 'run the chaos harness: faults on a seeded schedule, then a check that nothing was lost or applied twice',
    load: async () => (await import('./chaos.js')).chaosCommand,
  },
  { name: 'doctor', summary: 'check that PostgreSQL and RabbitMQ are reachable and the tables are migrated', load: async () => (await import('./doctor.js')).doctorCommand },
  { name: 'grants', summary: "print the GRANTs each component's role needs (--check COMPONENT: what this role lacks)", load: async () => (await import('./grants.js')).grantsCommand },
];
