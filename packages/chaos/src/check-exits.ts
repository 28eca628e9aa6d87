import type { Finding } from './check-result.js';
import type { HistoryOp } from './history.js';
import { crashExcerpt } from './process-exit.js';

/** What the supervisor records for an exit the harness did not cause. */
export interface UnexpectedExit {
  pid?: number;
  code: number | null;
  signal: string | null;
  /** Whether the process had reported ready (else it died starting). */
  ready?: boolean;
  /** Its last lines of output. */
  lastLines?: string[];
}

/**
 * Every relay or consumer exit the harness did not cause (not its SIGKILL, not an armed crash
 * point, not a clean exit after its SIGTERM): a failure however quickly the supervisor restarted
 * the process. One finding per exit, with the code or signal and the last lines of output.
 */
export function checkExits(history: readonly HistoryOp[]): Finding[] {
  const findings: Finding[] = [];
  for (const op of history) {
    if (op.f !== 'unexpected-exit') continue;
    const e = op.value as UnexpectedExit;
    const how = e.signal !== null ? `killed by ${e.signal}` : `exit code ${e.code}`;
    const when = `${(op.time / 1000).toFixed(1)} s into the run${e.ready === false ? ', before it was ready' : ''}`;
    const tail = crashExcerpt(e.lastLines ?? []).map((l) => `    | ${l}`).join('\n');
    findings.push({ anomaly: 'unexpectedExit', id: `${op.process} (pid ${e.pid ?? '?'})`, detail: `${how}, ${when}${tail !== '' ? `; last output:\n${tail}` : ''}` });
  }
  return findings;
}
