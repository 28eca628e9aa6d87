import { check } from './checker.js';
import { checkSaga } from './check-saga.js';
import { emptySagaState, type SagaFinalState } from './saga-final-state.js';
import { ANOMALY_KINDS, type CheckResult } from './check-result.js';
import { emptyFinalState, type FinalState } from './final-state.js';
import type { HistoryOp } from './history.js';
import type { ProcessSlot } from './supervisor.js';

/** What `runChaos` returns, and `mailroom chaos run --json` writes. */
export interface ChaosReport {
  /** True when the checker found nothing and the run could be judged. */
  valid: boolean;
  seed: number;
  startedAt: string;
  finishedAt: string;
  /** Wall time of the whole run, in ms. */
  elapsedMs: number;
  /** The options that shaped the run. */
  config: Record<string, unknown>;
  /** Phase durations (workload, drain, quiet), in ms. */
  phases: Record<string, number>;
  /** Whether the drain finished before its timeout. */
  drained: boolean;
  /** Process starts, crash points that actually fired, and exits the harness did not cause, per process. */
  processes: Array<{ name: string; starts: number; crashPointsFired: number; unexpectedExits?: number }>;
  check: CheckResult;
  /** Problems your `verify` returned (each one makes the run invalid). */
  verify: string[];
  /** What this run did not prove (no handler of yours, or no `verify` of its effects). */
  notProved?: string[];
  /** Where the history was written, if it was. */
  historyPath?: string;
  /** Output of the child processes, kept when the run is not valid. */
  diagnostics?: Record<string, string>;
}

/** What a run hands over to be judged and reported. */
export interface RunOutcome {
  seed: number;
  startedAt: Date;
  config: Record<string, unknown>;
  ordering: boolean;
  phases: Record<string, number>;
  drained: boolean;
  history: readonly HistoryOp[];
  /** The final reads; undefined when the run never got to them. */
  state: FinalState | undefined;
  /** A saga run: its final reads (undefined when the run never got to them) and its bound. */
  saga?: { state: SagaFinalState | undefined; boundMs: number; historyStartMs: number };
  /** Why the run cannot be judged, found by the harness itself (a failed phase). */
  unjudgeable: string[];
  verify: string[];
  notProved: string[];
  /** The consumers' attempts per message (the checker's poison-loop budget). */
  maxAttempts: number;
  slots: readonly ProcessSlot[];
  historyPath: string | undefined;
}

/**
 * Judges a run with the checker and assembles its report: a run is valid only when the checker
 * found nothing, it could be judged (the drain finished too) and `verify` found no problem.
 */
export function assembleReport(run: RunOutcome): ChaosReport {
  const result =
    run.saga !== undefined
      ? checkSaga(run.history, run.saga.state ?? emptySagaState(), run.state ?? emptyFinalState(), { boundMs: run.saga.boundMs, maxAttempts: run.maxAttempts, historyStartMs: run.saga.historyStartMs })
      : check(run.history, run.state ?? emptyFinalState(), { ordering: run.ordering, maxAttempts: run.maxAttempts });
  result.unjudgeable.push(...run.unjudgeable);
  if (!run.drained) result.unjudgeable.push('the drain timed out (see stuck)');
  result.valid = result.valid && result.unjudgeable.length === 0 && run.verify.length === 0;
  const finishedAt = new Date();
  const report: ChaosReport = {
    valid: result.valid,
    seed: run.seed,
    startedAt: run.startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    elapsedMs: finishedAt.getTime() - run.startedAt.getTime(),
    config: run.config,
    phases: run.phases,
    drained: run.drained,
    processes: run.slots.map((s) => ({ name: s.name, starts: s.starts, crashPointsFired: s.crashes, unexpectedExits: s.unexpectedExits })),
    check: result,
    verify: run.verify,
    notProved: run.notProved,
  };
  if (run.historyPath !== undefined) report.historyPath = run.historyPath;
  if (!result.valid) report.diagnostics = Object.fromEntries(run.slots.map((s) => [s.name, s.output().slice(-5000)]));
  return report;
}

const LABELS: Record<(typeof ANOMALY_KINDS)[number], string> = {
  lostAcknowledged: 'lost (acknowledged)',
  lostUnknown: 'lost (unknown outcome)',
  duplicatedEffect: 'duplicated effect',
  phantom: 'phantom',
  reordered: 'reordered within key',
  stuck: 'stuck',
  unexpectedDeadLetter: 'unexpected dead letter',
  escapedPoison: 'escaped poison',
  escapedHostile: 'escaped hostile',
  poisonLoop: 'poison loops',
  unexpectedExit: 'unexpected exits',
  sagaViolation: 'saga invariant broken',
};

/** A readable summary of a report, a few lines. */
export function formatSummary(report: ChaosReport): string {
  const c = report.check.counts;
  const lines: string[] = [];
  lines.push(`mailroom chaos: ${report.valid ? 'VALID' : 'INVALID'} (seed ${report.seed}, ${(report.elapsedMs / 1000).toFixed(1)} s)`);
  lines.push(
    `  workload: ${c.transactions} transactions, ${c.committedTransactions} committed, ${c.rolledBackTransactions} failed or rolled back, ${c.unknownOutcomeTransactions} unknown outcome; ${c.committedEvents} events committed, ${c.effects} effects`,
  );
  const faults = Object.entries(report.check.faults)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  lines.push(`  faults: ${c.faults} of ${Object.keys(report.check.faults).length} kinds${faults !== '' ? ` (${faults})` : ''}`);
  const fired = report.processes.reduce((a, p) => a + p.crashPointsFired, 0);
  const starts = report.processes.reduce((a, p) => a + p.starts, 0);
  const exits = report.processes.reduce((a, p) => a + (p.unexpectedExits ?? 0), 0);
  lines.push(
    `  processes: ${starts} starts, ${fired} crash points fired, ${exits} unexpected exits; duplicates injected ${c.injectedDuplicates}, poison injected ${c.injectedPoison}, hostile injected ${c.injectedHostile ?? 0}`,
  );
  lines.push(`  duplicate deliveries (allowed): ${c.duplicateDeliveries}; dead letters: ${c.deadLetters}; drained: ${report.drained ? 'yes' : 'no'}`);
  const saga = report.check.saga;
  if (saga !== undefined) {
    const reasons = Object.entries(saga.cancelled).map(([k, n]) => `${k} ${n}`).join(', ');
    lines.push(`  sagas: ${saga.orders} orders, ${saga.confirmed} confirmed, cancelled ${reasons === '' ? 'none' : reasons}; ${saga.refunded} charged late and refunded; ${saga.timeoutsDuringFaults} timeouts fired during a fault; ${saga.late} late replies or timeouts; bound ${saga.boundMs} ms`);
  }
  const l = report.check.latencyMs;
  lines.push(`  ${saga !== undefined ? 'commit-to-terminal' : 'commit-to-effect'} latency ms: p50 ${l.p50}, p90 ${l.p90}, p99 ${l.p99}, max ${l.max} (${l.count} events)`);
  lines.push(`  ${ANOMALY_KINDS.map((k) => `${LABELS[k]} ${c[k]}`).join(', ')}`);
  const explained = new Set((report.check.findings ?? []).map((f) => f.anomaly));
  for (const k of ANOMALY_KINDS) {
    const ids = report.check.anomalies[k];
    if (ids.length > 0 && !explained.has(k)) lines.push(`  ${LABELS[k]}: ${ids.slice(0, 10).join(', ')}${c[k] > 10 ? ', …' : ''}`);
  }
  // The anomalies that need their facts: what each hostile message did, the loop counts, the exits' last output.
  for (const k of ANOMALY_KINDS.filter((a) => explained.has(a))) {
    const findings = (report.check.findings ?? []).filter((f) => f.anomaly === k);
    lines.push(`  ${LABELS[k]}:`);
    for (const f of findings.slice(0, 10)) lines.push(`    ${f.id}: ${f.detail}`);
    if (findings.length > 10) lines.push(`    … and ${findings.length - 10} more (see the JSON report)`);
  }
  for (const n of report.notProved ?? []) lines.push(`  not proved: ${n}`);
  for (const u of report.check.unjudgeable) lines.push(`  cannot judge: ${u}`);
  if (report.verify.length > 0) lines.push(`  verify: ${report.verify.length} problem(s): ${report.verify.slice(0, 10).join('; ')}`);
  return lines.join('\n');
}
