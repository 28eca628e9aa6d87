import type { Writable } from 'node:stream';

/** What a CLI command gets: its own arguments (after the command name), env and streams. */
export interface CommandContext {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdout: Writable;
  stderr: Writable;
  /** Resolves when the process is asked to stop (SIGTERM or SIGINT). */
  stopSignal: AbortSignal;
}

/** One `mailroom <name>` command (its name and summary are listed in commands/index.ts). */
export interface Command {
  /** Full help text for `mailroom <name> --help`. */
  help(): string;
  /** Runs the command; resolves with the process exit code. */
  run(ctx: CommandContext): Promise<number>;
}

/** An error whose message is shown to the user as is, with exit code 2 (bad usage). */
export class UsageError extends Error {
  override name = 'UsageError';
}
