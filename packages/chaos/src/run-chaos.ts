import { setTimeout as sleep } from 'node:timers/promises';
import { openAdminLinks } from './admin-links.js';
import { resolveChaosOptions, type ChaosOptions, type ResolvedChaosOptions } from './chaos-options.js';
import { CHAOS_RETRY } from './chaos-event.js';
import { ROUTE } from './check-loops.js';
import { createBrokerNodes, type BrokerNodes } from './broker-node-faults.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { faultProxyGroup } from './fault-proxy-group.js';
import type { FinalState } from './final-state.js';
import { drainAndQuiet, heal } from './heal-and-drain.js';
import { History } from './history.js';
import { Nemesis, SCHEDULING_RELAY_CRASH_POINTS, type NemesisTargets } from './nemesis.js';
import { createRandom } from './random.js';
import { readFinalState } from './read-final-state.js';
import { assembleReport, type ChaosReport } from './report.js';
import { createRunResources, nameRunResources, removeRunResources, type RunResources } from './run-resources.js';
import { createWorkerFleet, type WorkerFleet } from './worker-fleet.js';
import { WireTap } from './wire-tap.js';
import { startWorkload, workloadKeys } from './workload.js';
import { queuedMessageIds } from './queue-probe.js';
import { sagaDrainProbe } from './saga-drain.js';
import { createSagaFleet } from './saga-fleet.js';
import { readSagaState, type SagaFinalState } from './saga-final-state.js';
import { sagaTablesSql, sagaWorkQueues, startSagaWorkload } from './saga-workload.js';

function proxyTarget(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname === 'localhost' ? '127.0.0.1' : u.hostname, port: Number(u.port || defaultPort) };
}

/** The options that shaped the run, as the history's setup phase and the report show them. */
function runConfig(o: ResolvedChaosOptions, r: RunResources): Record<string, unknown> {
  return {
    workload: o.workload,
    ...(o.workload === 'saga' ? { saga: o.saga } : {}),
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
    queueType: o.queueType,
    partitions: o.partitions ?? null,
    amqpNodes: o.amqpUrls.length,
    cluster: o.cluster ?? null,
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
  // The saga workload checks its own services' tables; no handler of the user's runs in it.
  if (o.workload === 'saga') return [];
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
  const r = nameRunResources(undefined, o.partitions);
  const brokerNodes: BrokerNodes | undefined = o.cluster === undefined ? undefined : createBrokerNodes(o.cluster.script, o.cluster.nodes);
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
  let sagaState: SagaFinalState | undefined;
  const saga = o.workload === 'saga';
  let verify: string[] = [];
  const unjudgeable: string[] = [];
  const tap = tapFor(r);
  const keys = workloadKeys(o.keys);

  try {
    await createRunResources(links, r, o.keys, o.setup);
    if (saga) await links.pool.query(sagaTablesSql(r.schema, o.saga.skus, o.saga.stockPerSku));
    const pgProxy = await startFaultProxy('pg', proxyTarget(o.databaseUrl, 5432));
    proxies.push(pgProxy);
    // One proxy per broker URL (a cluster's nodes), one wire tap over all: the link faults hit every node's link at once.
    const nodeProxies: FaultProxy[] = [];
    for (const url of o.amqpUrls) {
      const proxy = await startFaultProxy(o.amqpUrls.length === 1 ? 'amqp' : `amqp-${nodeProxies.length + 1}`, proxyTarget(url, 5672), tap);
      nodeProxies.push(proxy);
      proxies.push(proxy);
    }
    const amqpProxy = nodeProxies.length === 1 ? (nodeProxies[0] as FaultProxy) : faultProxyGroup('amqp', nodeProxies, o.amqpUrls);
    const viaPg = pgProxy.url(o.databaseUrl);
    const workerUrls = { databaseUrl: viaPg, amqpUrl: o.amqpUrls.map((u, i) => (nodeProxies[i] as FaultProxy).url(u)).join(',') };
    fleet = saga ? createSagaFleet(o, r, workerUrls, history) : createWorkerFleet(o, r, workerUrls, history);
    await fleet.start();

    history.add('info', 'harness', 'phase', { phase: 'workload' });
    o.log(`workload and nemesis for ${o.durationMs} ms`);
    const t0 = Date.now();
    const producers = {
      databaseUrl: viaPg,
      schema: r.schema,
      exchange: r.exchange,
      applicationName: `${r.applicationPrefix}producer`,
      seed: o.seed,
      producers: o.producers,
      transactionsPerSecond: o.transactionsPerSecond,
      rollbackRate: o.rollbackRate,
    };
    workload = saga
      ? startSagaWorkload({ ...producers, skus: o.saga.skus, declinedRate: o.saga.declinedRate, slowRate: o.saga.slowRate }, history, stopWorkload.signal)
      : startWorkload(
          { ...producers, keys: o.keys, maxEventsPerTransaction: o.maxEventsPerTransaction, slowCommitRate: o.slowCommitRate },
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
      amqpUrl: o.amqpUrls[0] as string,
      applicationPrefix: r.applicationPrefix,
      serviceRestarts: o.serviceRestarts,
      ...(brokerNodes !== undefined ? { brokerNodes } : {}),
      // The saga workload schedules its timeouts: its relays also crash while moving due rows.
      ...(saga ? { relayCrashPoints: SCHEDULING_RELAY_CRASH_POINTS } : {}),
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

    if (brokerNodes !== undefined) {
      // Every node up again before the processes are healed: the drain needs the whole cluster.
      history.add('invoke', 'harness', 'heal-broker-nodes');
      await brokerNodes.healAll();
      history.add('ok', 'harness', 'heal-broker-nodes');
    }
    await heal(proxies, fleet, history, () => tap.mark());
    o.log('healed; draining');
    const settled = await drainAndQuiet(links, r, history, o, saga ? sagaDrainProbe(links, r) : undefined);
    drained = settled.drained;
    phases.drainMs = settled.drainMs;
    phases.quietMs = settled.quietMs;

    history.add('info', 'harness', 'phase', { phase: 'final-read' });
    await fleet.stop();
    state = await readFinalState(links, r, tap.tallies());
    if (saga) {
      state.queuedIds = await queuedMessageIds(await links.connection(), sagaWorkQueues(r));
      sagaState = await readSagaState(links, r);
    }
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
    if (!o.keep) {
      if (saga) {
        const channel = await links.channel().catch(() => undefined);
        for (const queue of sagaWorkQueues(r)) await channel?.deleteQueue(queue).catch(() => undefined);
      }
      await removeRunResources(links, r);
    }
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
    // The bound is the saga's own budget plus the backlog the run left, as the drain measured it:
    // on a loaded machine every order also waits behind the messages queued before it, and the
    // last ones behind all of them. The drain's own timeout still caps it.
    ...(saga ? { saga: { state: sagaState, boundMs: o.saga.boundMs + (phases.drainMs ?? 0), historyStartMs: history.startedAtMs } } : {}),
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
