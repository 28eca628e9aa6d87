// The seeded CI run: every fault kind but the service restarts (so every process-level one),
// real relay and consumer processes, and a user's handler; it must come out valid. A second,
// short run proves the harness also fails: a handler that writes outside its transaction.
// The child processes run the BUILT packages: `pnpm build` first (pnpm test does).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PROCESS_FAULTS, formatSummary, runChaos } from '@mailroom/chaos';
import { testUrls } from '../../../test/helpers.js';
import { balanceChecks } from './balances.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

describe('chaos run (CI)', () => {
  it('seed 20261121, 45 s of faults of every kind, ordering on: valid, nothing lost or applied twice', { timeout: 180_000 }, async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const report = await runChaos({
      databaseUrl,
      amqpUrl,
      seed: 20261121,
      durationMs: 45_000,
      faultIntervalMs: 1000,
      ordering: true,
      relays: 2,
      transactionsPerSecond: 30,
      handlerModule: fixture('balance-effect.ts'),
      ...balanceChecks(16),
    });
    const summary = formatSummary(report);
    console.log(summary);
    expect(report.valid, `${summary}\n${JSON.stringify(report.diagnostics ?? {}, null, 1).slice(0, 4000)}`).toBe(true);
    for (const kind of PROCESS_FAULTS) expect(report.check.faults[kind] ?? 0, kind).toBeGreaterThan(0);
    expect(report.processes.reduce((a, p) => a + p.crashPointsFired, 0)).toBeGreaterThan(0);
    expect(report.check.counts.committedEvents).toBeGreaterThan(500);
    expect(report.check.counts.duplicateDeliveries).toBeGreaterThan(0);
    expect(report.drained).toBe(true);
  });

  it('flags a handler that is not idempotent (writes outside the transaction, retried)', { timeout: 120_000 }, async () => {
    const { databaseUrl, amqpUrl } = testUrls();
    const report = await runChaos({
      databaseUrl,
      amqpUrl,
      seed: 7,
      durationMs: 6000,
      faults: [],
      handlerFailureRate: 0,
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
