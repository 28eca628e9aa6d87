import { exec } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { BrokerNodes } from './broker-node-faults.js';
import type { FaultKind } from './fault-kind.js';
import type { FaultProxy } from './fault-proxy.js';
import type { History } from './history.js';
import { Injector, type InjectorTargets, type Outcome } from './injector.js';
import type { Random } from './random.js';
import type { ProcessSlot } from './supervisor.js';

/** Relay crash points (in `@mailroom/outbox`). */
export const RELAY_CRASH_POINTS = ['relay.after-claim', 'relay.after-publish-before-confirm', 'relay.after-confirm-before-commit', 'relay.after-commit'];

/** The relay's crash points with scheduled delivery too (the saga workload's timeouts): the mover of due rows. */
export const SCHEDULING_RELAY_CRASH_POINTS = [...RELAY_CRASH_POINTS, 'relay.scheduled-after-lock'];

/** Consumer crash points (`@mailroom/inbox`, `@mailroom/dlq`, and the harness's handler). */
export const CONSUMER_CRASH_POINTS = [
  'chaos.handler.mid',
  'inbox.before-commit',
  'inbox.after-commit-before-ack',
  'inbox.after-dead-letter-before-ack',
  'dlq.sink.after-commit-before-ack',
];

/** What the nemesis acts on; the admin pool and channel (see `InjectorTargets`) go straight to the servers. */
export interface NemesisTargets extends InjectorTargets {
  relays: ProcessSlot[];
  consumers: ProcessSlot[];
  proxies: { pg: FaultProxy; amqp: FaultProxy };
  /** application_name prefix of every session of this run. */
  applicationPrefix: string;
  serviceRestarts: { postgres?: string; rabbitmq?: string };
  /** The crash points `crash-relay` picks from. Default: {@link RELAY_CRASH_POINTS}. */
  relayCrashPoints?: readonly string[];
  /** The cluster's nodes, for the broker node faults (absent: those faults fail, not allowed). */
  brokerNodes?: BrokerNodes;
}

/** Runs faults on a seeded schedule until `stopSignal`, one at a time. */
export class Nemesis {
  readonly #t: NemesisTargets;
  readonly #random: Random;
  readonly #history: History;
  readonly #log: (line: string) => void;
  readonly #injector: Injector;

  constructor(targets: NemesisTargets, random: Random, history: History, log: (line: string) => void) {
    this.#t = targets;
    this.#random = random;
    this.#history = history;
    this.#log = log;
    this.#injector = new Injector(targets, random, history);
  }

  /** Faults in a shuffled round robin (every kind once per round), gaps around `intervalMs`. */
  async run(kinds: readonly FaultKind[], intervalMs: number, stopSignal: AbortSignal): Promise<void> {
    let round: FaultKind[] = [];
    const pause = (ms: number): Promise<void> => sleep(ms, undefined, { signal: stopSignal }).catch(() => undefined);
    await pause(Math.min(1000, intervalMs));
    while (!stopSignal.aborted && kinds.length > 0) {
      if (round.length === 0) round = this.#random.shuffle(kinds);
      const kind = round.shift() as FaultKind;
      await this.inject(kind);
      if (stopSignal.aborted) break;
      await pause(this.#random.int(Math.floor(intervalMs / 2), Math.floor((intervalMs * 3) / 2)));
    }
  }

  /** Injects one fault and records it (invoke, then ok / info, or fail when it could not be done). */
  async inject(kind: FaultKind): Promise<void> {
    this.#history.add('invoke', 'nemesis', kind);
    let outcome: Outcome;
    try {
      outcome = await this.#fault(kind);
    } catch (error) {
      outcome = { result: 'info', value: { error: error instanceof Error ? error.message : String(error) } };
    }
    this.#history.add(outcome.result, 'nemesis', kind, outcome.value);
    this.#log(`nemesis ${kind} ${outcome.result} ${JSON.stringify(outcome.value)}`);
  }

  #duration(min = 300, max = 2500): number {
    return this.#random.int(min, max);
  }

  #pickRunning(slots: ProcessSlot[]): ProcessSlot | undefined {
    const running = slots.filter((s) => s.running && !s.paused);
    return running.length > 0 ? this.#random.pick(running) : undefined;
  }

  async #fault(kind: FaultKind): Promise<Outcome> {
    const t = this.#t;
    switch (kind) {
      case 'kill-relay':
      case 'kill-consumer': {
        const slot = this.#pickRunning(kind === 'kill-relay' ? t.relays : t.consumers);
        if (slot === undefined) return { result: 'fail', value: { reason: 'nothing running' } };
        const pid = slot.pid;
        slot.signal('SIGKILL');
        return { result: 'ok', value: { target: slot.name, pid } };
      }
      case 'pause-relay':
      case 'pause-consumer': {
        const slot = this.#pickRunning(kind === 'pause-relay' ? t.relays : t.consumers);
        if (slot === undefined) return { result: 'fail', value: { reason: 'nothing running' } };
        const ms = this.#duration();
        slot.signal('SIGSTOP');
        await sleep(ms);
        slot.resume();
        return { result: 'ok', value: { target: slot.name, ms } };
      }
      case 'crash-relay':
      case 'crash-consumer': {
        const slot = this.#pickRunning(kind === 'crash-relay' ? t.relays : t.consumers);
        if (slot === undefined) return { result: 'fail', value: { reason: 'nothing running' } };
        const point = this.#random.pick(kind === 'crash-relay' ? (t.relayCrashPoints ?? RELAY_CRASH_POINTS) : CONSUMER_CRASH_POINTS);
        const spec = `${point}#${this.#random.int(1, 8)}`;
        await slot.armAndRestart(spec);
        return { result: 'ok', value: { target: slot.name, crashPoint: spec } };
      }
      case 'terminate-backends': {
        // Once, or a burst (every 20-50 ms for up to 2 s): a session is then likely killed
        // mid-batch, with a client checked out (a PostgreSQL restart or failover does the same).
        const role = this.#random.pick(['relay', 'consumer', 'producer', '']);
        const burstMs = this.#random.chance(0.5) ? this.#random.int(300, 2000) : 0;
        const until = Date.now() + burstMs;
        let terminated = 0;
        let rounds = 0;
        do {
          const { rows } = await t.admin.query<{ n: number }>(
            `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> pg_backend_pid()`,
            [`${t.applicationPrefix}${role}%`],
          );
          terminated += rows[0]?.n ?? 0;
          rounds += 1;
          if (burstMs > 0) await sleep(this.#random.int(20, 50));
        } while (Date.now() < until);
        return { result: 'ok', value: { role: role === '' ? 'all' : role, terminated, rounds, burstMs } };
      }
      case 'amqp-reset':
        return { result: 'ok', value: { closed: t.proxies.amqp.reset() } };
      case 'pg-reset':
        return { result: 'ok', value: { closed: t.proxies.pg.reset() } };
      case 'latency':
      case 'blackhole':
      case 'bandwidth': {
        const proxy = this.#random.pick([t.proxies.pg, t.proxies.amqp]);
        // A blackhole may outlast the relays' publish timeout (3 s): confirms then time out.
        const ms = kind === 'blackhole' ? this.#duration(300, 6000) : this.#duration();
        const value: Record<string, unknown> = { link: proxy.name, ms };
        if (kind === 'latency') {
          const latencyMs = this.#random.int(20, 250);
          value.latencyMs = latencyMs;
          proxy.set({ latencyMs });
        } else if (kind === 'blackhole') {
          proxy.set({ blackhole: true });
        } else {
          const bandwidth = this.#random.int(10, 200) * 1024;
          value.bytesPerSecond = bandwidth;
          proxy.set({ bandwidth });
        }
        await sleep(ms);
        // Only this fault is undone: a concurrent nemesis may hold another on the same link.
        if (kind === 'latency') proxy.set({ latencyMs: 0 });
        else if (kind === 'blackhole') proxy.set({ blackhole: false });
        else proxy.set({ bandwidth: 0 });
        return { result: 'ok', value };
      }
      case 'duplicate':
      case 'poison':
      case 'hostile-headers':
      case 'hostile-nul':
      case 'forged-retry':
      case 'forged-dead-letter':
      case 'deep-json':
      case 'conflicting-duplicate':
      case 'unpublishable-row':
        return this.#injector.inject(kind);
      case 'kill-broker-node':
      case 'stop-broker-app': {
        if (t.brokerNodes === undefined) return { result: 'fail', value: { reason: 'not allowed: no cluster given' } };
        // Down long enough for consumers and relays to fail over and quorum queues to elect leaders elsewhere.
        return t.brokerNodes.fault(kind === 'kill-broker-node' ? 'kill' : 'stop-app', this.#random, this.#duration(1000, 8000));
      }
      case 'restart-postgres':
      case 'restart-rabbitmq': {
        const command = kind === 'restart-postgres' ? t.serviceRestarts.postgres : t.serviceRestarts.rabbitmq;
        if (command === undefined) return { result: 'fail', value: { reason: 'not allowed: no restart command given' } };
        await promisify(exec)(command, { timeout: 120_000 });
        return { result: 'ok', value: { command } };
      }
    }
  }
}
