import type { Command } from '../command.js';
import { loadRelayCommand } from '../relay-bundle.js';

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
  { name: 'relay', summary: 'run the outbox relay as a sidecar (configured by MAILROOM_* variables)', load: loadRelayCommand },
  { name: 'dlq', summary: 'dead letters: list, show, groups, replay (through the outbox), discard, sink', load: async () => (await import('./dlq.js')).dlqCommand },
  { name: 'saga', summary: 'saga instances: list (--status, --name, --stuck-for), show one with its history, cleanup of ended ones', load: async () => (await import('./saga.js')).sagaCommand },
  {
    name: 'history',
    summary: 'the event archive: list, show, replay (to one queue, original message ids), prune (drop day partitions)',
    load: async () => (await import('./history.js')).historyCommand,
  },
  { name: 'ui', summary: 'the dead-letter workbench in the browser (binds 127.0.0.1:7480 unless told otherwise)', load: async () => (await import('./ui.js')).uiCommand },
  {
    name: 'chaos',
    summary: 'run the chaos harness: faults on a seeded schedule, then a check that nothing was lost or applied twice',
    load: async () => (await import('./chaos.js')).chaosCommand,
  },
  {
    name: 'contracts',
    summary: 'export an AsyncAPI 3.0 document of the message contracts a module exports (contracts export --module PATH)',
    load: async () => (await import('./contracts.js')).contractsCommand,
  },
  { name: 'doctor', summary: 'check PostgreSQL, pending migrations, and RabbitMQ permissions and plugins (--json)', load: async () => (await import('./doctor.js')).doctorCommand },
  { name: 'grants', summary: "print the GRANTs each component's role needs (--check COMPONENT: what this role lacks)", load: async () => (await import('./grants.js')).grantsCommand },
];
