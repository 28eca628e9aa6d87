import { setTimeout as sleep } from 'node:timers/promises';
import { openAdminLinks } from './admin-links.js';
import { resolveChaosOptions, type ChaosOptions, type ResolvedChaosOptions } from './chaos-options.js';
import { CHAOS_RETRY } from './chaos-event.js';
import { ROUTE } from './check-loops.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import type { FinalState } from './final-state.js';
import { drainAndQuiet, heal } from './heal-and-drain.js';
import { History } from './history.js';
import { Nemesis, type NemesisTargets } from './nemesis.js';
import { createRandom } from './random.js';
import { readFinalState } from './read-final-state.js';
import { assembleReport, type ChaosReport } from './report.js';
import { createRunResources, nameRunResources, removeRunResources, type RunResources } from './run-resources.js';
import { createWorkerFleet, type WorkerFleet } from './worker-fleet.js';
import { WireTap } from './wire-tap.js';
import { startWorkload, workloadKeys } from './workload.js';

function proxyTarget(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname === 'localhost' ? '127.0.0.1' : u.hostname, port: Number(u.port || defaultPort) };
}

/** The options that shaped the run, as the history's setup phase and the report show them. */
function runConfig(o: ResolvedChaosOptions, r: RunResources): Record<string, unknown> {
  return {
    durationMs: o.durationMs,
    relays: o.relays,
    consumers: o.consumers,
    producers: o.producers,
    keys: o.keys,
    transactionsPerSecond: o.transactionsPerSecond,
    rollbackRate: o.rollbackRate,
    slowCommitRate: o.slowCommitRate,
    handlerFailureRate: o.handlerFailureRate,
    ordering: o.ordering,
    faults: o.faults,
    faultIntervalMs: o.faultIntervalMs,
    faultConcurrency: o.faultConcurrency,
    handlerModule: o.handlerModule,
    allowRemote: o.allowRemote,
    schema: r.schema,
    exchange: r.exchange,
  };
}

/** What a run did not prove, said plainly in the report. */
function notProved(o: ResolvedChaosOptions): string[] {
  if (o.handlerModule === undefined) return ["no handler of yours ran: the run checked mailroom with the harness's own handler (give handlerModule / --handler)"];
  if (o.verify === undefined) {
    return [
      "your handler's effects were not checked: without verify (--checks) the checker sees only the harness's ledger row, written in the " +
        "consumer's transaction, so an effect your handler makes outside it (its own connection, an HTTP call) could be applied twice unseen",
    ];
  }
  return [];
}

/** The wire tap's routes: deliveries from the work and dead-letter queues, and the relays' publishes. */
function tapFor(r: RunResources): WireTap {
  return new WireTap((kind, exchange) => {
    if (kind === 'publish') return exchange === r.exchange ? ROUTE.relayPublish : null;
    return exchange === r.deadLetters ? ROUTE.deadLetters : ROUTE.work;
  });
}

/**
 * Runs a chaos test: producers commit domain rows with outbox events while relays and
 * consumers run as child processes and a seeded nemesis injects faults; then everything heals
 * and drains, and the checker compares the history with the final state. Resolves with the
 * report (check `report.valid`); rejects only when the run could not be set up (a target that
 * is not this machine without `allowRemote` is refused before any connection).
 */
export async function runChaos(input: ChaosOptions): Promise<ChaosReport> {
  const o = resolveChaosOptions(input);
  const r = nameRunResources();
  const startedAt = new Date();
  const history = new History(o.historyPath);
  const config = runConfig(o, r);
  history.add('info', 'harness', 'phase', { phase: 'setup', seed: o.seed, ...config });
  o.log(`chaos run ${r.runId}, seed ${o.seed}, schema ${r.schema}`);

  const links = openAdminLinks(o.databaseUrl, o.amqpUrl);
  const phases: Record<string, number> = {};
  const proxies: FaultProxy[] = [];
  let fleet: WorkerFleet | undefined;
  const stopWorkload = new AbortController();
  let workload: Promise<void> | undefined;
  let drained = false;
  let state: FinalState | undefined;
  let verify: string[] = [];
  const unjudgeable: string[] = [];
  const tap = tapFor(r);
  const keys = workloadKeys(o.keys);

  try {
    await createRunResources(links, r, o.keys, o.setup);
    const pgProxy = await startFaultProxy('pg', proxyTarget(o.databaseUrl, 5432));
    proxies.push(pgProxy);
    const amqpProxy = await startFaultProxy('amqp', proxyTarget(o.amqpUrl, 5672), tap);
    proxies.push(amqpProxy);
    const viaPg = pgProxy.url(o.databaseUrl);
    fleet = createWorkerFleet(o, r, { databaseUrl: viaPg, amqpUrl: amqpProxy.url(o.amqpUrl) }, history);
    await fleet.start();

    history.add('info', 'harness', 'phase', { phase: 'workload' });
    o.log(`workload and nemesis for ${o.durationMs} ms`);
    const t0 = Date.now();
    workload = startWorkload(
      {
        databaseUrl: viaPg,
        schema: r.schema,
        exchange: r.exchange,
        applicationName: `${r.applicationPrefix}producer`,
        seed: o.seed,
        producers: o.producers,
        keys: o.keys,
        transactionsPerSecond: o.transactionsPerSecond,
        maxEventsPerTransaction: o.maxEventsPerTransaction,
        rollbackRate: o.rollbackRate,
        slowCommitRate: o.slowCommitRate,
      },
      history,
      stopWorkload.signal,
    );
    const stopNemesis = new AbortController();
    const targets: NemesisTargets = {
      relays: fleet.relays,
      consumers: fleet.consumers,
      proxies: { pg: pgProxy, amqp: amqpProxy },
      admin: links.pool,
      channel: links.channel,
      schema: r.schema,
      exchange: r.exchange,
      queue: r.queue,
      deadLetters: r.deadLetters,
      maxAttempts: CHAOS_RETRY.maxAttempts,
      amqpUrl: o.amqpUrl,
      applicationPrefix: r.applicationPrefix,
      serviceRestarts: o.serviceRestarts,
    };
    // One nemesis per concurrent fault stream; the first uses the run's random stream.
    const nemeses = Array.from(
      { length: o.faultConcurrency },
      (_, i) => new Nemesis(targets, createRandom(i === 0 ? o.seed : o.seed + (i + 1) * 7919), history, o.log),
    );
    const nemesisDone = Promise.all(nemeses.map((n) => n.run(o.faults, o.faultIntervalMs, stopNemesis.signal)));
    await sleep(o.durationMs, undefined, o.signal !== undefined ? { signal: o.signal } : {}).catch(() => o.log('stopped early'));
    stopNemesis.abort();
    stopWorkload.abort();
    await nemesisDone;
    await workload;
    phases.workloadMs = Date.now() - t0;

    await heal(proxies, fleet, history, () => tap.mark());
    o.log('healed; draining');
    const settled = await drainAndQuiet(links, r, history, o);
    drained = settled.drained;
    phases.drainMs = settled.drainMs;
    phases.quietMs = settled.quietMs;

    history.add('info', 'harness', 'phase', { phase: 'final-read' });
    await fleet.stop();
    state = await readFinalState(links, r, tap.tallies());
    if (o.verify !== undefined) {
      const committed = state.domain.map((d) => ({ eventId: d.eventId, key: d.key, seq: d.seq }));
      verify = await o.verify({ query: links.query, schema: r.schema, keys, committed }).catch((e: unknown) => [`verify threw: ${e instanceof Error ? e.message : String(e)}`]);
    }
  } catch (error) {
    // Once the workload ran, a failure is a finding to report; before, the run never started.
    if (state === undefined && workload !== undefined) unjudgeable.push(`the run failed: ${error instanceof Error ? error.message : String(error)}`);
    else throw error;
  } finally {
    stopWorkload.abort();
    await workload?.catch(() => undefined);
    await fleet?.stop();
    for (const proxy of proxies) await proxy.close();
    if (!o.keep) await removeRunResources(links, r);
    await links.close();
    history.add('info', 'harness', 'phase', { phase: 'done' });
    await history.close();
  }

  return assembleReport({
    seed: o.seed,
    startedAt,
    config: { ...config, handlerModule: o.handlerModule ?? null },
    ordering: o.ordering,
    phases,
    drained,
    history: history.ops,
    state,
    unjudgeable,
    verify,
    notProved: [
      ...notProved(o),
      ...(tap.unreadable > 0 ? [`the wire tap could not read ${tap.unreadable} AMQP connection(s): deliveries on them were not counted for poison loops`] : []),
    ],
    maxAttempts: CHAOS_RETRY.maxAttempts,
    slots: fleet?.slots ?? [],
    historyPath: o.historyPath,
  });
}
