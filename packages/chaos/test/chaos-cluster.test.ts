// The seeded CI run on a three-node RabbitMQ cluster (scripts/rabbit-cluster.sh): quorum queues,
// partitioned consumers (three processes over six partitions, ordering on), relays and consumers
// connected to all three nodes through one fault proxy each, and broker node faults (kill -9 of a
// node then a restart, stop_app then start_app) among process and link faults. It must come out
// valid: nothing lost, no effect applied twice, no key out of order, nothing stuck.
// The cluster is started here, from scratch, when it is not up (about 20 s), and destroyed
// afterwards only then.
// The child processes run the BUILT packages: `pnpm build` first (pnpm test does).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatSummary, runChaos, type FaultKind } from '@mailroom/chaos';
import { testUrls } from '../../../test/helpers.js';

const run = promisify(execFile);
const script = fileURLToPath(new URL('../../../scripts/rabbit-cluster.sh', import.meta.url));
let startedHere = false;
let amqpUrl = '';

/** Whether all three nodes answer (the script's `status` prints `… down` for a node that does not). */
async function clusterUp(): Promise<boolean> {
  const { stdout } = await run(script, ['status'], { timeout: 60_000 }).catch(() => ({ stdout: 'down' }));
  return !/\bdown\b/.test(stdout) && (stdout.match(/\bup\b/g) ?? []).length === 3;
}

beforeAll(async () => {
  if (!(await clusterUp())) {
    startedHere = true;
    // From scratch: nodes of a stopped cluster each wait for their peers at boot, and the script
    // starts them one after the other (a start after a stop can take minutes). The data is the test's.
    await run(script, ['destroy'], { timeout: 60_000 }).catch(() => undefined);
    await run(script, ['start'], { timeout: 110_000 });
  }
  amqpUrl = (await run(script, ['urls'])).stdout.trim();
}, 120_000);

afterAll(async () => {
  if (startedHere) await run(script, ['destroy'], { timeout: 60_000 }).catch(() => undefined);
}, 90_000);

describe('chaos run on a three-node cluster (CI)', () => {
  it('seed 20261202, 30 s of broker node kills and stops, process and link faults, quorum queues, 3 consumers over 6 partitions: valid', { timeout: 120_000 }, async () => {
    const { databaseUrl } = testUrls();
    const faults: FaultKind[] = ['kill-broker-node', 'stop-broker-app', 'kill-consumer', 'crash-consumer', 'kill-relay', 'amqp-reset', 'terminate-backends'];
    const report = await runChaos({
      databaseUrl,
      amqpUrl,
      cluster: { script },
      seed: 20261202,
      queueType: 'quorum',
      partitions: 6,
      consumers: 3,
      relays: 2,
      keys: 24,
      durationMs: 30_000,
      faults,
      faultIntervalMs: 1000,
      faultConcurrency: 2,
      transactionsPerSecond: 20,
      drainTimeoutMs: 40_000,
    });
    const summary = formatSummary(report);
    console.log(summary);
    const a = report.check.anomalies;
    expect(report.valid, `${summary}\n${JSON.stringify(report.diagnostics ?? {}, null, 1).slice(0, 4000)}`).toBe(true);
    expect({ lost: a.lostAcknowledged.length + a.lostUnknown.length, duplicatedEffect: a.duplicatedEffect.length, reordered: a.reordered.length, stuck: a.stuck.length }).toEqual({
      lost: 0,
      duplicatedEffect: 0,
      reordered: 0,
      stuck: 0,
    });
    expect(report.drained).toBe(true);
    // A node was really killed and came back (the other node fault may have been refused while one was down).
    expect(report.check.faults['kill-broker-node'] ?? 0, 'kill-broker-node').toBeGreaterThan(0);
    expect(report.check.counts.committedEvents).toBeGreaterThan(200);
  });
});

describe('cluster options', () => {
  const base = (): { databaseUrl: string; amqpUrl: string } => ({ databaseUrl: testUrls().databaseUrl, amqpUrl });
  const refused = (options: Parameters<typeof runChaos>[0], message: RegExp): Promise<void> =>
    expect(runChaos(options)).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(message) as unknown });

  it('refuses the broker node faults without a cluster, and a cluster with one URL', async () => {
    await refused({ ...base(), faults: ['kill-broker-node'] }, /kill-broker-node need a cluster/);
    await refused({ ...base(), amqpUrl: amqpUrl.split(',')[0] as string, cluster: { script } }, /every node's URL/);
  });

  it('refuses several consumer processes with ordering but no partitions, and partitions with ordering off', async () => {
    await refused({ ...base(), ordering: true, consumers: 3 }, /run one consumer/);
    await refused({ ...base(), partitions: 4, ordering: false }, /need ordering/);
  });

  it('refuses a cluster URL that is not this machine', async () => {
    await refused({ ...base(), amqpUrl: `${amqpUrl},amqp://guest:guest@192.0.2.1:5672` }, /192\.0\.2\.1/);
  });
});
