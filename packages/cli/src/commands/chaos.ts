import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isMailroomError } from '@mailroom/core';
import { assertLoopbackTargets, BROKER_NODE_FAULTS, chaosOptionsSchema, CLUSTER_FAULTS, DEFAULT_FAULTS, FAULT_KINDS, HOSTILE_FAULTS, PROCESS_FAULTS, formatSummary, runChaos, type ChaosOptions, type FaultKind } from '@mailroom/chaos';
import type { Command } from '../command.js';
import { UsageError } from '../command.js';
import { describeEnv, envSpec, readEnv } from '../env.js';

// The two URLs come from the environment (the rest are flags), described by the harness's schema.
const CHAOS_ENV = envSpec(chaosOptionsSchema, { pick: ['databaseUrl', 'amqpUrl'] });

const USAGE = [
  'Usage: mailroom chaos run [options]',
  '',
  'Producers commit domain rows with outbox events (some roll back) while relays and consumers run as',
  'child processes and a seeded nemesis injects faults. Then everything heals and drains, and a checker',
  'compares the history with the final state: lost, duplicated effect, phantom, reordered, stuck,',
  'unexpected dead letter, escaped poison or hostile message, poison loops, unexpected process exits.',
  'Exit 0 when valid, 1 when not (or when it cannot judge), 2 on bad usage.',
  'Each run uses a schema and broker objects of its own and removes them afterwards (unless --keep).',
  'Only servers on this machine (127.0.0.0/8, ::1, localhost) unless --allow-remote.',
  '',
  '  --seed N                  seed of the fault schedule and the workload (default: random, printed)',
  '  --workload events|saga    events (default): domain rows with outbox events; saga: orders, each an',
  '                            orchestrated saga (orchestrators, inventory and payments as processes, timeouts',
  '                            as scheduled messages); checked: every saga ends within its bound, no step or',
  '                            compensation applied twice, no order both charged and cancelled, stock conserved.',
  '                            Its default faults: process, link and backend faults (no injected messages)',
  '  --duration 60s            workload and faults (ms, or s / m); the drain and checks follow',
  '  --faults a,b,c            fault kinds (default: all, i.e. every kind but restart-* and the broker node faults;',
  `                            with --cluster-script: "cluster" = ${CLUSTER_FAULTS.join(', ')}); "process" = the`,
  '                            process faults (kill-*, pause-*, crash-*); "hostile" = the hostile inputs',
  `                            (${HOSTILE_FAULTS.join(', ')});`,
  '                            "none" = no faults; e.g. all,restart-postgres',
  `                            kinds: ${FAULT_KINDS.join(', ')}`,
  '  --interval 1500           mean gap between faults, in ms',
  '  --concurrency 1           fault streams at once (faults overlap: a kill during a blackhole, …)',
  '  --ordering                per-key order: relays and one consumer in ordering mode, reorders checked',
  '  --partitions N            partitioned consumers: N partition queues shared by the consumer processes',
  '                            (implies --ordering; --consumers then defaults to 3)',
  '  --queue-type quorum       the work queues: classic (default) or quorum (replicated; on a cluster)',
  '  --cluster-script PATH     the local cluster MAILROOM_AMQP_URL lists (comma-separated node URLs), e.g.',
  '                            scripts/rabbit-cluster.sh: enables the broker node faults (kill-broker-node:',
  '                            kill -9 a node then start it; stop-broker-app: stop_app then start_app; one node',
  '                            down at a time) and makes "cluster" the default fault set. The AMQP link faults',
  '                            then hit every node\'s link at once; the heal starts every node',
  '  --cluster-nodes 3         the cluster\'s node count',
  '  --relays N, --consumers N, --producers N, --keys N, --rate TX_PER_S',
  '  --rollback-rate 0.1       share of producer transactions rolled back',
  '  --slow-commit-rate 0.1    share held open 50-800 ms before COMMIT (rows commit out of id order)',
  '  --failure-rate 0.02       share of handler runs that throw a transient error (0 with --ordering)',
  '  --handler path.mjs        a module exporting `effect(ctx)`: your handler, run in the consumer transaction',
  '  --checks path.mjs         a module exporting `setup(ctx)` (create your tables) and `verify(ctx)` (count your',
  "                            handler's effects: each problem it returns makes the run invalid). Without verify,",
  "                            effects your handler makes outside the consumer's transaction are not checked",
  '                            (the summary says so)',
  '  --drain-timeout 60s       after it, events not applied count as stuck',
  '  --json report.json        write the full report (counts, ids, latency quantiles, fault counts)',
  '  --history history.jsonl   write the history (invoke / ok / fail / info per line)',
  '  --keep                    keep the schema, queues and exchanges for a look',
  '  --allow-restart-postgres CMD, --allow-restart-rabbitmq CMD',
  '                            enable restart-postgres / restart-rabbitmq faults with this shell command;',
  '                            they affect everything on that server: only on a machine of your own',
  '  --allow-remote            allow PostgreSQL / RabbitMQ on another machine (the harness breaks them: yours only)',
  '  --quiet                   no progress lines, only the summary',
  '',
  'Environment:',
].join('\n');

function duration(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value);
  if (m === null) throw new UsageError(`--${name} ${JSON.stringify(value)}: use ms, or a number with s or m (90s, 10m)`);
  const unit = m[2] ?? 'ms';
  return Math.round(Number(m[1]) * (unit === 'm' ? 60_000 : unit === 's' ? 1000 : 1));
}

function number(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got ${JSON.stringify(value)}`);
  return n;
}

function faults(value: string | undefined): FaultKind[] | undefined {
  if (value === undefined) return undefined;
  const kinds = new Set<FaultKind>();
  const unknown: string[] = [];
  for (const k of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (k === 'none') continue;
    if (k === 'all') for (const f of DEFAULT_FAULTS) kinds.add(f);
    else if (k === 'process') for (const f of PROCESS_FAULTS) kinds.add(f);
    else if (k === 'hostile') for (const f of HOSTILE_FAULTS) kinds.add(f);
    else if (k === 'cluster') for (const f of CLUSTER_FAULTS) kinds.add(f);
    else if (k === 'broker') for (const f of BROKER_NODE_FAULTS) kinds.add(f);
    else if ((FAULT_KINDS as readonly string[]).includes(k)) kinds.add(k as FaultKind);
    else unknown.push(k);
  }
  if (unknown.length > 0) throw new UsageError(`unknown fault kind ${unknown.join(', ')} (kinds: all, process, hostile, cluster, broker, none, ${FAULT_KINDS.join(', ')})`);
  return [...kinds];
}

/**
 * The user's `setup` and `verify`, from the module `--checks` names (named exports, or a default
 * export object with them). Either may be missing, not both; without `verify` the summary says
 * what the run did not prove.
 */
async function loadChecks(path: string): Promise<Pick<ChaosOptions, 'setup' | 'verify'>> {
  const file = resolve(path);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    throw new UsageError(`--checks ${path}: cannot load it: ${error instanceof Error ? error.message : String(error)}`);
  }
  const fallback = typeof mod.default === 'object' && mod.default !== null ? (mod.default as Record<string, unknown>) : {};
  const verify = mod.verify ?? fallback.verify;
  const setup = mod.setup ?? fallback.setup;
  if (verify === undefined && setup === undefined) throw new UsageError(`--checks ${path} exports neither "setup" nor "verify" (how to count your handler's effects)`);
  for (const [name, fn] of Object.entries({ setup, verify })) {
    if (fn !== undefined && typeof fn !== 'function') throw new UsageError(`--checks ${path}: "${name}" must be a function`);
  }
  const checks: Pick<ChaosOptions, 'setup' | 'verify'> = {};
  if (setup !== undefined) checks.setup = setup as ChaosOptions['setup'];
  if (verify !== undefined) checks.verify = verify as ChaosOptions['verify'];
  return checks;
}

/** `mailroom chaos run`: the chaos harness from the command line. */
export const chaosCommand: Command = {
  help: () => `${USAGE}\n${describeEnv(CHAOS_ENV)}`,
  async run({ argv, env, stdout, stderr, stopSignal }) {
    const [sub, ...rest] = argv;
    if (sub !== 'run') throw new UsageError(`expected "chaos run", got ${sub === undefined ? 'nothing' : JSON.stringify(sub)} (see --help)`);
    let parsed;
    try {
      parsed = parseArgs({
        args: rest,
        strict: true,
        options: {
          seed: { type: 'string' },
          workload: { type: 'string' },
          duration: { type: 'string' },
          faults: { type: 'string' },
          interval: { type: 'string' },
          concurrency: { type: 'string' },
          ordering: { type: 'boolean' },
          partitions: { type: 'string' },
          'queue-type': { type: 'string' },
          'cluster-script': { type: 'string' },
          'cluster-nodes': { type: 'string' },
          relays: { type: 'string' },
          consumers: { type: 'string' },
          producers: { type: 'string' },
          keys: { type: 'string' },
          rate: { type: 'string' },
          'rollback-rate': { type: 'string' },
          'slow-commit-rate': { type: 'string' },
          'failure-rate': { type: 'string' },
          handler: { type: 'string' },
          checks: { type: 'string' },
          'allow-remote': { type: 'boolean' },
          'drain-timeout': { type: 'string' },
          json: { type: 'string' },
          history: { type: 'string' },
          keep: { type: 'boolean' },
          'allow-restart-postgres': { type: 'string' },
          'allow-restart-rabbitmq': { type: 'string' },
          quiet: { type: 'boolean' },
        },
      });
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    const v = parsed.values;
    const { databaseUrl, amqpUrl } = readEnv(env, CHAOS_ENV);
    const options: ChaosOptions = { databaseUrl, amqpUrl, signal: stopSignal };
    const set = <K extends keyof ChaosOptions>(key: K, value: ChaosOptions[K] | undefined): void => {
      if (value !== undefined) options[key] = value;
    };
    set('seed', number('seed', v.seed));
    if (v.workload !== undefined && v.workload !== 'events' && v.workload !== 'saga') throw new UsageError(`--workload ${JSON.stringify(v.workload)}: use events or saga`);
    set('workload', v.workload);
    set('durationMs', duration('duration', v.duration));
    set('faults', faults(v.faults));
    set('faultIntervalMs', duration('interval', v.interval));
    set('faultConcurrency', number('concurrency', v.concurrency));
    set('ordering', v.ordering);
    set('partitions', number('partitions', v.partitions));
    if (v['queue-type'] !== undefined && v['queue-type'] !== 'classic' && v['queue-type'] !== 'quorum') throw new UsageError(`--queue-type ${JSON.stringify(v['queue-type'])}: use classic or quorum`);
    set('queueType', v['queue-type']);
    if (v['cluster-script'] !== undefined) {
      const nodes = number('cluster-nodes', v['cluster-nodes']);
      options.cluster = { script: resolve(v['cluster-script']), ...(nodes !== undefined ? { nodes } : {}) };
    } else if (v['cluster-nodes'] !== undefined) throw new UsageError('--cluster-nodes needs --cluster-script');
    set('relays', number('relays', v.relays));
    set('consumers', number('consumers', v.consumers));
    set('producers', number('producers', v.producers));
    set('keys', number('keys', v.keys));
    set('transactionsPerSecond', number('rate', v.rate));
    set('rollbackRate', number('rollback-rate', v['rollback-rate']));
    set('slowCommitRate', number('slow-commit-rate', v['slow-commit-rate']));
    set('handlerFailureRate', number('failure-rate', v['failure-rate']));
    set('handlerModule', v.handler !== undefined ? resolve(v.handler) : undefined);
    set('drainTimeoutMs', duration('drain-timeout', v['drain-timeout']));
    set('historyPath', v.history !== undefined ? resolve(v.history) : undefined);
    set('keep', v.keep);
    set('allowRemote', v['allow-remote']);
    // Refused before anything runs, the user's --checks module included (runChaos checks again).
    try {
      assertLoopbackTargets({ databaseUrl, amqpUrl, allowRemote: v['allow-remote'] === true });
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    if (v.checks !== undefined) Object.assign(options, await loadChecks(v.checks));
    const restarts: { postgres?: string; rabbitmq?: string } = {};
    if (v['allow-restart-postgres'] !== undefined) restarts.postgres = v['allow-restart-postgres'];
    if (v['allow-restart-rabbitmq'] !== undefined) restarts.rabbitmq = v['allow-restart-rabbitmq'];
    if (Object.keys(restarts).length > 0) options.serviceRestarts = restarts;
    if (options.faults?.some((k) => k.startsWith('restart-')) === true) {
      for (const k of options.faults.filter((f) => f.startsWith('restart-'))) {
        const service = k === 'restart-postgres' ? 'postgres' : 'rabbitmq';
        if (restarts[service] === undefined) throw new UsageError(`fault ${k} needs --allow-restart-${service} "<shell command>"`);
      }
    }
    if (v.quiet !== true) options.log = (line) => stderr.write(`${new Date().toISOString().slice(11, 23)} ${line}\n`);
    let report;
    try {
      report = await runChaos(options);
    } catch (error) {
      // Options the harness refuses (a remote target without --allow-remote, say) are bad usage.
      if (isMailroomError(error) && error.code === 'INVALID_CONFIG') throw new UsageError(error.message);
      throw error;
    }
    if (v.json !== undefined) await writeFile(resolve(v.json), `${JSON.stringify(report, null, 2)}\n`);
    stdout.write(`${formatSummary(report)}\n`);
    return report.valid ? 0 : 1;
  },
};
