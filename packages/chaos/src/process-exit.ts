/** What the supervisor knows about one process's exit. */
export interface ExitFacts {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The harness (the nemesis's kill, or a stop that ran out of grace) sent it SIGKILL. */
  killedByHarness: boolean;
  /** The harness asked it to stop (SIGTERM): a restart to arm crash points, or the end of the run. */
  terminatedByHarness: boolean;
  /** Crash points were armed for this process. */
  crashPointsArmed: boolean;
  /** It wrote that a crash point fired. */
  sawCrashPoint: boolean;
}

/**
 * Why a process ended: the nemesis killed it, an armed crash point fired, the harness stopped
 * it, or none of these (`unexpected`: the process died by itself, a failure of the system under
 * test however quickly the supervisor restarts it).
 */
export type ExitCause = 'killed' | 'crash-point' | 'stopped' | 'unexpected';

/** Classifies an exit; pure, so that each rule is tested on its own. */
export function classifyExit(f: ExitFacts): ExitCause {
  if (f.signal === 'SIGKILL' && f.sawCrashPoint && f.crashPointsArmed) return 'crash-point';
  if (f.signal === 'SIGKILL' && f.killedByHarness) return 'killed';
  // A graceful stop ends with 0 (the workers exit 0 once stopped); dying of the SIGTERM itself is fine too.
  if (f.terminatedByHarness && (f.code === 0 || f.signal === 'SIGTERM')) return 'stopped';
  return 'unexpected';
}

/** The last `n` lines of `text`. */
export function lastLines(text: string, n = 20): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.slice(-n);
}

// Node starts an uncaught exception's report with where it was thrown: `node:events:505`, a path and line.
const CRASH_HEADER = /^(node:[\w/]+:\d+|(file:\/\/)?\/\S+:\d+)$/;

/**
 * The lines of a process's last output that say why it died: from the last uncaught-exception
 * header on (the worker's own JSON reports, blank lines and `field: undefined` lines left out),
 * at most `max` lines.
 */
export function crashExcerpt(lines: readonly string[], max = 16): string[] {
  let from = 0;
  for (let i = lines.length - 1; i >= 0; i -= 1) {
    if (CRASH_HEADER.test(lines[i] as string)) {
      from = i;
      break;
    }
  }
  const kept = lines.slice(from).filter((l) => l.trim() !== '' && !l.startsWith('{"event"') && !/^\s+\w+: undefined,?$/.test(l));
  return from === 0 && kept.length > max ? kept.slice(-max) : kept.slice(0, max);
}
