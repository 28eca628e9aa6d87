import type { Command } from '../command.js';
import { chaosCommand } from './chaos.js';
import { dlqCommand } from './dlq.js';
import { doctorCommand } from './doctor.js';
import { grantsCommand } from './grants.js';
import { migrateCommand } from './migrate.js';
import { relayCommand } from './relay.js';

/** Every command of the CLI, in the order `mailroom --help` lists them. */
export const commands: Command[] = [migrateCommand, relayCommand, dlqCommand, chaosCommand, doctorCommand, grantsCommand];
