// The seeded CI runs: every fault kind but the service restarts (process faults, link faults,
// backend terminations, hostile deliveries and unpublishable rows), real relay and consumer
// processes and a user's handler, once with ordering off and once with it on; each must come out
// valid: nothing lost, applied twice or stuck, no poison loop, no hostile message escaped, no
// process exit the nemesis did not cause. A third, short run proves the harness also fails: a
// handler that writes outside its transaction. The whole file stays under ~2.5 minutes.
// The child processes run the BUILT packages: `pnpm build` first (pnpm test does).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_FAULTS, PROCESS_FAULTS, formatSummary, runChaos, type ChaosReport } from '@mailroom/chaos';
import { testUrls } from '../../../test/helpers.js';
import { balanceChecks } from './balances.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const reports: ChaosReport[] = [];

async function seededRun(seed: number, ordering: boolean): Promise<ChaosReport> {
  const { databaseUrl, amqpUrl } = testUrls();
  const report = await runChaos({
    databaseUrl,
    amqpUrl,
    seed,
    ordering,
    durationMs: 30_000,
    faultIntervalMs: 700,
    faultConcurrency: 2,
    relays: 2,
    transactionsPerSecond: 25,
    drainTimeoutMs: 40_000,
    handlerModule: fixture('balance-effect.ts'),
    ...balanceChecks(16),
  });
  reports.push(report);
  return report;
}

function expectValid(report: ChaosReport): void {
  const summary = formatSummary(report);
  console.log(summary);
  expect(report.valid, `${summary}\n${JSON.stringify(report.diagnostics ?? {}, null, 1).slice(0, 4000)}`).toBe(true);
  // Two fault streams over 21 kinds in 30 s: nearly every kind in each run, every kind in the two (below).
  expect(Object.keys(report.check.faults).length).toBeGreaterThanOrEqual(DEFAULT_FAULTS.length - 4);
  expect(report.check.faults['terminate-backends'] ?? 0, 'terminate-backends').toBeGreaterThan(0);
  expect(report.check.counts.injectedHostile).toBeGreaterThan(0);
  expect(report.check.counts.committedEvents).toBeGreaterThan(300);
  expect(report.drained).toBe(true);
}

describe('chaos run (CI)', () => {
  it('seed 20261122, 30 s of faults of every kind, ordering off: valid', { timeout: 120_000 }, async () => {
    const report = await seededRun(20261122, false);
    expectValid(report);
    expect(report.check.counts.duplicateDeliveries).toBeGreaterThan(0);
  });

  it('seed 20261121, 30 s of faults of every kind, ordering on: valid', { timeout: 120_000 }, async () => {
    const report = await seededRun(20261121, true);
    expectValid(report);
    expect(report.processes.reduce((a, p) => a + p.crashPointsFired, 0)).toBeGreaterThan(0);
  });

  it('injected every kind of fault, the process faults included, between the two runs', () => {
    expect(reports).toHaveLength(2);
    const fired = new Set(reports.flatMap((r) => Object.keys(r.check.faults)));
    expect(DEFAULT_FAULTS.filter((k) => !fired.has(k))).toEqual([]);
    for (const kind of PROCESS_FAULTS) expect(fired.has(kind), kind).toBe(true);
  });

  it('flags a handler that is not idempotent (writes outside the transaction; the injected failures after it make the retry write again)', { timeout: 60_000 }, async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const report = await runChaos({
      databaseUrl,
      amqpUrl,
      seed: 7,
      durationMs: 5000,
      faults: [],
      handlerFailureRate: 0.2,
      handlerModule: fixture('leaky-effect.ts'),
      ...balanceChecks(8),
    });
    expect(report.valid).toBe(false);
    expect(report.verify.length).toBeGreaterThan(0);
    // The harness's own ledger is written in the transaction: no double effect there.
    expect(report.check.counts.duplicatedEffect).toBe(0);
    expect(formatSummary(report)).toContain('verify:');
  });
});
