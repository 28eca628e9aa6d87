/** How often the process checks that the process that started it is still there, in ms. */
export const PARENT_CHECK_MS = 500;

/**
 * Calls `onOrphaned` once when the process that started this one exits (this process is then
 * re-parented, and `process.ppid` changes). A launcher that does not forward signals — `npx`,
 * `npm exec`, a shell script without `exec` — exits on SIGTERM and leaves its child running with
 * nobody left to stop it; watching the parent makes the child stop gracefully with it. A process
 * started by PID 1 (or as PID 1, in a container) has nothing to watch. Returns the function that
 * stops watching; the timer never keeps the process alive.
 */
export function watchParent(onOrphaned: (formerParent: number) => void, intervalMs = PARENT_CHECK_MS): () => void {
  const parent = process.ppid;
  if (parent <= 1) return () => undefined;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onOrphaned(parent);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
