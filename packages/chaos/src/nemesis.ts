import { exec } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import { CONTENT_TYPE, DEAD_LETTER_REASON } from '@mailroom/core';
import { envelopeHeaders, publishConfirmed, quoteIdentifier } from '@mailroom/core/internal';
import { CHAOS_EVENT_TYPE } from './chaos-event.js';
import type { FaultKind } from './fault-kind.js';
import type { FaultProxy } from './fault-proxy.js';
import type { History } from './history.js';
import type { Random } from './random.js';
import type { ProcessSlot } from './supervisor.js';

/** Relay crash points (in `@mailroom/outbox`). */
export const RELAY_CRASH_POINTS = ['relay.after-claim', 'relay.after-publish-before-confirm', 'relay.after-confirm-before-commit', 'relay.after-commit'];

/** Consumer crash points (`@mailroom/inbox`, `@mailroom/dlq`, and the harness's handler). */
export const CONSUMER_CRASH_POINTS = [
  'chaos.handler.mid',
  'inbox.before-commit',
  'inbox.after-commit-before-ack',
  'inbox.after-dead-letter-before-ack',
  'dlq.sink.after-commit-before-ack',
];

/** What the nemesis acts on. */
export interface NemesisTargets {
  relays: ProcessSlot[];
  consumers: ProcessSlot[];
  proxies: { pg: FaultProxy; amqp: FaultProxy };
  /** A pool straight to PostgreSQL (not through the proxy). */
  admin: pg.Pool;
  /** A confirm channel straight to RabbitMQ, for injected messages. */
  channel: () => Promise<ConfirmChannel>;
  schema: string;
  exchange: string;
  /** application_name prefix of every session of this run. */
  applicationPrefix: string;
  serviceRestarts: { postgres?: string; rabbitmq?: string };
}

/** How long an injected message may wait for its publisher confirm. */
const PUBLISH_TIMEOUT_MS = 10_000;

type Outcome = { result: 'ok' | 'info' | 'fail'; value: Record<string, unknown> };

/** Runs faults on a seeded schedule until `stopSignal`, one at a time. */
export class Nemesis {
  readonly #t: NemesisTargets;
  readonly #random: Random;
  readonly #history: History;
  readonly #log: (line: string) => void;

  constructor(targets: NemesisTargets, random: Random, history: History, log: (line: string) => void) {
    this.#t = targets;
    this.#random = random;
    this.#history = history;
    this.#log = log;
  }

  /** Faults in a shuffled round robin (every kind once per round), gaps around `intervalMs`. */
  async run(kinds: readonly FaultKind[], intervalMs: number, stopSignal: AbortSignal): Promise<void> {
    let round: FaultKind[] = [];
    await sleep(Math.min(1000, intervalMs));
    while (!stopSignal.aborted && kinds.length > 0) {
      if (round.length === 0) round = this.#random.shuffle(kinds);
      const kind = round.shift() as FaultKind;
      await this.inject(kind);
      if (stopSignal.aborted) break;
      await sleep(this.#random.int(Math.floor(intervalMs / 2), Math.floor((intervalMs * 3) / 2)));
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
        const point = this.#random.pick(kind === 'crash-relay' ? RELAY_CRASH_POINTS : CONSUMER_CRASH_POINTS);
        const spec = `${point}#${this.#random.int(1, 8)}`;
        await slot.armAndRestart(spec);
        return { result: 'ok', value: { target: slot.name, crashPoint: spec } };
      }
      case 'terminate-backends': {
        const role = this.#random.pick(['relay', 'consumer', 'producer', '']);
        const { rows } = await t.admin.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> pg_backend_pid()`,
          [`${t.applicationPrefix}${role}%`],
        );
        return { result: 'ok', value: { role: role === '' ? 'all' : role, terminated: rows[0]?.n ?? 0 } };
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
        return this.#injectDuplicates();
      case 'poison':
        return this.#injectPoison();
      case 'restart-postgres':
      case 'restart-rabbitmq': {
        const command = kind === 'restart-postgres' ? t.serviceRestarts.postgres : t.serviceRestarts.rabbitmq;
        if (command === undefined) return { result: 'fail', value: { reason: 'not allowed: no restart command given' } };
        await promisify(exec)(command, { timeout: 120_000 });
        return { result: 'ok', value: { command } };
      }
    }
  }

  /** Publishes again, with the same message id, events that already took effect. */
  async #injectDuplicates(): Promise<Outcome> {
    const t = this.#t;
    const s = quoteIdentifier(t.schema);
    const count = this.#random.int(1, 5);
    const { rows } = await t.admin.query<{ event_id: string; key: string; producer: number; created_at: Date }>(
      `SELECT d.event_id, d.key, d.producer, d.created_at FROM ${s}.chaos_domain d
        WHERE EXISTS (SELECT 1 FROM ${s}.chaos_ledger l WHERE l.event_id = d.event_id)
        ORDER BY d.created_at DESC OFFSET $1 LIMIT $2`,
      [this.#random.int(0, 200), count],
    );
    if (rows.length === 0) return { result: 'fail', value: { reason: 'no event took effect yet' } };
    const channel = await t.channel();
    for (const row of rows) {
      this.#history.add('invoke', 'nemesis', 'inject-duplicate', { id: row.event_id });
      await this.#publish(channel, row.event_id, { eventId: row.event_id, key: row.key, producer: row.producer }, row.key, row.created_at);
      this.#history.add('ok', 'nemesis', 'inject-duplicate', { id: row.event_id });
    }
    return { result: 'ok', value: { ids: rows.map((r) => r.event_id) } };
  }

  /** Publishes a message that must end in the dead letters: an invalid payload, or one the handler refuses. */
  async #injectPoison(): Promise<Outcome> {
    const id = randomUUID();
    const invalid = this.#random.chance(0.5);
    const payload = invalid ? { eventId: id, poison: 'not a key' } : { eventId: id, key: 'poison', producer: 0, poison: 'throw' };
    // The reason the consumer must give, so the history says what each poison message is.
    const kind = invalid ? DEAD_LETTER_REASON.invalidPayload : DEAD_LETTER_REASON.nonRetryable;
    this.#history.add('invoke', 'nemesis', 'inject-poison', { id, kind });
    const channel = await this.#t.channel();
    await this.#publish(channel, id, payload, null, new Date());
    this.#history.add('ok', 'nemesis', 'inject-poison', { id, kind });
    return { result: 'ok', value: { id, kind } };
  }

  /** Publishes as the relay would (the codec's headers, confirmed and mandatory); rejects unless confirmed. */
  async #publish(channel: ConfirmChannel, id: string, payload: unknown, key: string | null, occurredAt: Date): Promise<void> {
    const properties = { messageId: id, type: CHAOS_EVENT_TYPE, contentType: CONTENT_TYPE, persistent: true, headers: envelopeHeaders({ key, occurredAt }) };
    const { outcome } = publishConfirmed(
      channel,
      this.#t.exchange,
      CHAOS_EVENT_TYPE,
      Buffer.from(JSON.stringify(payload)),
      properties,
      // Matched by a per-publish id: concurrent fault streams share the channel and may pick one event.
      { deadline: sleep(PUBLISH_TIMEOUT_MS, undefined, { ref: false }) },
    );
    const result = await outcome;
    if (result.kind !== 'confirmed') throw new Error(`publish not confirmed: ${result.error}`);
  }
}
