#!/usr/bin/env node
// Only light modules are imported statically: the sidecar re-executes itself before it loads
// anything (young-generation.ts), and what a command needs (@mailroom/core and the rest) is
// imported when the command runs.
import { UsageError } from './command.js';
import { commands } from './commands/index.js';
import { cliVersion } from './version.js';
import { capYoungGeneration } from './young-generation.js';

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length), 4);
  return [
    'Usage: mailroom <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `mailroom <command> --help` for the options and environment variables of a command,',
    'and `mailroom --version` (or -v) for the version.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`${cliVersion()}\n`);
    return 0;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`mailroom: unknown command "${name}"\n\n${usage()}\n`);
    return 2;
  }
  // The sidecar runs for days: its young generation is capped (a re-exec in place, see the module).
  if (name === 'relay' && !rest.includes('--help') && !rest.includes('-h')) capYoungGeneration(process.env);
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.help()}\n`);
    return 0;
  }
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    return await command.run({ argv: rest, env: process.env, stdout: process.stdout, stderr: process.stderr, stopSignal: stop.signal });
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`mailroom ${name}: ${error.message}\n`);
      return 2;
    }
    const { createConsoleLogger, describeError, isMailroomError } = await import('@mailroom/core');
    const message = isMailroomError(error) ? error.message : describeError(error);
    // A sidecar asked for JSON logs keeps its last words parseable too (an invalid variable, say).
    if (name === 'relay' && process.env.MAILROOM_LOG_FORMAT === 'json') createConsoleLogger({ format: 'json', name: `mailroom ${name}` }).error(message);
    else process.stderr.write(`mailroom ${name}: ${message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
