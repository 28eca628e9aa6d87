/** The cap on each of V8's two young-generation semi-spaces that long-running sidecars run with, in MB. */
export const SIDECAR_SEMI_SPACE_MB = 4;

const FLAG = '--max-semi-space-size';

/**
 * Re-executes this process once, in place, with V8's young generation capped, for the commands
 * that run for days (`mailroom relay`). V8 grows the young generation to 64 MB per semi-space
 * while a relay drains a large backlog (short-lived rows and buffers at a high rate), so its RSS
 * more than doubled; the cap costs a few µs of CPU per message and V8 cannot change it once
 * started, hence the re-exec. `process.execve` keeps the pid, so signals, supervisors and the
 * parent watch see no difference. Nothing happens when the flag is already given (command line or
 * NODE_OPTIONS), when `MAILROOM_SEMI_SPACE_MB=0`, or on a Node without `process.execve` (< 22.15).
 * Returns only when it did not re-execute.
 */
export function capYoungGeneration(env: NodeJS.ProcessEnv): void {
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  // After the re-exec the flag is on the command line: this returns, so it happens once.
  if (typeof execve !== 'function') return;
  if (process.execArgv.some((a) => a.startsWith(FLAG)) || (env.NODE_OPTIONS ?? '').includes(FLAG)) return;
  const configured = env.MAILROOM_SEMI_SPACE_MB;
  const mb = configured === undefined || configured === '' ? SIDECAR_SEMI_SPACE_MB : Number(configured);
  // A bad value is left for the command's own reading of the environment to refuse clearly.
  if (!Number.isInteger(mb) || mb <= 0 || mb > 256) return;
  execve.call(process, process.execPath, [process.execPath, `${FLAG}=${mb}`, ...process.execArgv, ...process.argv.slice(1)], env);
}
