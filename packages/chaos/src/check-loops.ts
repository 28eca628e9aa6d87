import type { Finding } from './check-result.js';
import type { FinalState } from './final-state.js';
import type { HistoryOp } from './history.js';

/** Routes the wire tap counts under (see `WireTap`). */
export const ROUTE = {
  /** Deliveries from the work queue (first deliveries, broker redeliveries, returns from delay queues). */
  work: 'work-queue',
  /** Deliveries from the dead-letter queue to the sink. */
  deadLetters: 'dead-letter-queue',
  /** Publishes of outbox rows by the relays. */
  relayPublish: 'relay-publish',
} as const;

/** How often a healthy system may still deliver one message to the sink, or publish one row, after the heal. */
const AFTER_HEAL_SLACK = 3;

/**
 * Finds poison loops: a message delivered (or a row published) many times within one second, or,
 * after the heal (no faults any more), more often than a fresh message could need — delivered more
 * than `maxAttempts` + 2 times from the work queue, or handled or requeued by a consumer more than
 * that. The wire tap's counts see loops the consumer never reports; the consumers' own reports
 * (`handler-run`, `requeued`) see retries in place that never touch the wire.
 */
export function checkLoops(history: readonly HistoryOp[], state: FinalState, options: { maxAttempts: number; hotLoopPerSecond: number }): Finding[] {
  const findings: Finding[] = [];
  const seen = new Set<string>();
  const loop = (id: string, detail: string): void => {
    if (seen.has(id)) return;
    seen.add(id);
    findings.push({ anomaly: 'poisonLoop', id: id === '' ? '(no message id)' : id, detail });
  };
  const workBudget = options.maxAttempts + 2;
  for (const t of state.deliveries ?? []) {
    const what = t.route === ROUTE.relayPublish ? 'published' : `delivered from the ${t.route}`;
    const counts = `${t.total} in all, ${t.afterMark} after the heal, given back ${t.requeues} time(s)`;
    if (t.peakPerSecond > options.hotLoopPerSecond) loop(t.messageId, `${what} ${t.peakPerSecond} times within one second (${counts})`);
    else if (t.route === ROUTE.work && t.afterMark > workBudget) loop(t.messageId, `${what} ${t.afterMark} times after the heal; ${options.maxAttempts} attempts allow ${workBudget} (${counts})`);
    else if (t.route !== ROUTE.work && t.afterMark > AFTER_HEAL_SLACK) loop(t.messageId, `${what} ${t.afterMark} times after the heal (${counts})`);
  }
  // The consumers' own reports, after the heal: handler runs beyond the attempts, or requeues at all.
  const heal = history.find((op) => op.process === 'nemesis' && op.f === 'heal' && op.type === 'invoke')?.time;
  if (heal !== undefined) {
    const runs = new Map<string, number>();
    const requeues = new Map<string, number>();
    for (const op of history) {
      if (op.time < heal) continue;
      const id = (op.value as { id?: unknown } | undefined)?.id;
      if (typeof id !== 'string') continue;
      if (op.f === 'handler-run') runs.set(id, (runs.get(id) ?? 0) + 1);
      else if (op.f === 'requeued') requeues.set(id, (requeues.get(id) ?? 0) + 1);
    }
    for (const [id, n] of runs) if (n > workBudget) loop(id, `its handler ran ${n} more times after the heal; ${options.maxAttempts} attempts allow ${workBudget}`);
    for (const [id, n] of requeues) if (n > AFTER_HEAL_SLACK) loop(id, `requeued ${n} times after the heal, with nothing failing any more`);
  }
  return findings;
}
