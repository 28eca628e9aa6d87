import type { Command } from '../command.js';

/** Every command of the CLI, in the order `mailroom --help` lists them. */
export const commands: Command[] = [];
