import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import { CONTENT_TYPE, DEAD_LETTER_REASON } from '@mailroom/core';
import { envelopeHeaders, publishConfirmed, quoteIdentifier } from '@mailroom/core/internal';
import { CHAOS_EVENT_TYPE } from './chaos-event.js';
import type { History } from './history.js';
import { HOSTILE_HEADER, conflictingDuplicate, deepJson, forgedDeadLetter, forgedRetry, hostileHeaders, hostileNul, type HostileDelivery, type HostileTargets } from './hostile-messages.js';
import type { HostileInjection } from './hostile-injection.js';
import type { Random } from './random.js';
import { publishRaw } from './raw-amqp-publisher.js';

/** How long an injected message may wait for its publisher confirm. */
const PUBLISH_TIMEOUT_MS = 10_000;

/** What the injector writes to: the broker and the database straight (never through the proxies). */
export interface InjectorTargets extends HostileTargets {
  admin: pg.Pool;
  /** A confirm channel straight to RabbitMQ. */
  channel: () => Promise<ConfirmChannel>;
  /** The RabbitMQ URL (for the raw publisher). */
  amqpUrl: string;
  schema: string;
}

/** The message kinds the nemesis injects. */
export type InjectionKind = 'duplicate' | 'poison' | 'hostile-headers' | 'hostile-nul' | 'forged-retry' | 'forged-dead-letter' | 'deep-json' | 'conflicting-duplicate' | 'unpublishable-row';

/** One injection's result, as the nemesis records it. */
export type Outcome = { result: 'ok' | 'info' | 'fail'; value: Record<string, unknown> };

/**
 * Injects messages past the producers: duplicates and poison as before, and the hostile kinds —
 * each recorded as an `inject-*` operation (invoke, then ok once the broker confirmed it or the
 * row committed) with what its only acceptable end is.
 */
export class Injector {
  readonly #t: InjectorTargets;
  readonly #random: Random;
  readonly #history: History;

  constructor(targets: InjectorTargets, random: Random, history: History) {
    this.#t = targets;
    this.#random = random;
    this.#history = history;
  }

  async inject(kind: InjectionKind): Promise<Outcome> {
    const t = this.#t;
    switch (kind) {
      case 'duplicate':
        return this.#duplicates();
      case 'poison':
        return this.#poison();
      case 'hostile-headers':
        return this.#hostile(hostileHeaders(t, this.#random));
      case 'hostile-nul':
        return this.#hostile(hostileNul(t, this.#random));
      case 'forged-retry':
        return this.#hostile(forgedRetry(t, this.#random));
      case 'forged-dead-letter':
        return this.#hostile(forgedDeadLetter(t, this.#random));
      case 'deep-json':
        return this.#hostile(deepJson(t, this.#random));
      case 'conflicting-duplicate': {
        const [event] = await this.#appliedEvents(1);
        if (event === undefined) return { result: 'fail', value: { reason: 'no event took effect yet' } };
        return this.#hostile(conflictingDuplicate(t, event));
      }
      case 'unpublishable-row':
        return this.#unpublishableRow();
    }
  }

  /** Events that took effect, picked among the recent ones. */
  async #appliedEvents(count: number): Promise<Array<{ eventId: string; key: string; producer: number; createdAt: Date }>> {
    const s = quoteIdentifier(this.#t.schema);
    const { rows } = await this.#t.admin.query<{ event_id: string; key: string; producer: number; created_at: Date }>(
      `SELECT d.event_id, d.key, d.producer, d.created_at FROM ${s}.chaos_domain d
        WHERE EXISTS (SELECT 1 FROM ${s}.chaos_ledger l WHERE l.event_id = d.event_id)
        ORDER BY d.created_at DESC OFFSET $1 LIMIT $2`,
      [this.#random.int(0, 200), count],
    );
    return rows.map((r) => ({ eventId: r.event_id, key: r.key, producer: r.producer, createdAt: r.created_at }));
  }

  /** Publishes again, with the same message id, events that already took effect. */
  async #duplicates(): Promise<Outcome> {
    const rows = await this.#appliedEvents(this.#random.int(1, 5));
    if (rows.length === 0) return { result: 'fail', value: { reason: 'no event took effect yet' } };
    for (const row of rows) {
      this.#history.add('invoke', 'nemesis', 'inject-duplicate', { id: row.eventId });
      await this.#publish(this.#t.exchange, CHAOS_EVENT_TYPE, row.eventId, CHAOS_EVENT_TYPE, { eventId: row.eventId, key: row.key, producer: row.producer }, envelopeHeaders({ key: row.key, occurredAt: row.createdAt }));
      this.#history.add('ok', 'nemesis', 'inject-duplicate', { id: row.eventId });
    }
    return { result: 'ok', value: { ids: rows.map((r) => r.eventId) } };
  }

  /** Publishes a message that must end in the dead letters: an invalid payload, or one the handler refuses. */
  async #poison(): Promise<Outcome> {
    const id = randomUUID();
    const invalid = this.#random.chance(0.5);
    const payload = invalid ? { eventId: id, poison: 'not a key' } : { eventId: id, key: 'poison', producer: 0, poison: 'throw' };
    // The reason the consumer must give, so the history says what each poison message is.
    const kind = invalid ? DEAD_LETTER_REASON.invalidPayload : DEAD_LETTER_REASON.nonRetryable;
    this.#history.add('invoke', 'nemesis', 'inject-poison', { id, kind });
    await this.#publish(this.#t.exchange, CHAOS_EVENT_TYPE, id, CHAOS_EVENT_TYPE, payload, envelopeHeaders({}));
    this.#history.add('ok', 'nemesis', 'inject-poison', { id, kind });
    return { result: 'ok', value: { id, kind } };
  }

  /** Publishes one hostile message (raw when amqplib cannot encode its headers) and records it. */
  async #hostile(d: HostileDelivery): Promise<Outcome> {
    const summary = { id: d.injection.id, variant: d.injection.variant };
    this.#history.add('invoke', 'nemesis', 'inject-hostile', d.injection);
    const raw = (): Promise<void> =>
      publishRaw(this.#t.amqpUrl, { exchange: d.exchange, routingKey: d.routingKey, body: d.body, messageId: d.messageId, type: d.type, contentType: CONTENT_TYPE, headers: d.headers }, PUBLISH_TIMEOUT_MS);
    try {
      if (d.raw) await raw();
      // Near the limit, amqplib may refuse what the broker takes: send those raw.
      else {
        await this.#publishBody(d.exchange, d.routingKey, d.messageId, d.type, d.body, d.headers).catch(async (e: unknown) => {
          if (!/encoding buffer/.test(String(e))) throw e;
          await raw();
        });
      }
    } catch (error) {
      // Not sent (or not confirmed): nothing to hold the system to. An unconfirmed publish may
      // still arrive, so the outcome is unknown, not failed.
      this.#history.add('info', 'nemesis', 'inject-hostile', { ...d.injection, error: error instanceof Error ? error.message : String(error) });
      return { result: 'info', value: { ...summary, error: error instanceof Error ? error.message : String(error) } };
    }
    this.#history.add('ok', 'nemesis', 'inject-hostile', d.injection);
    return { result: 'ok', value: summary };
  }

  /**
   * Inserts an outbox row no relay can publish, as someone with SQL access could (`enqueue`
   * refuses it): headers over 64 KiB, a routing key or a type over 255 bytes. It must end as a
   * dead letter of the relay, and never block anything but its own key.
   */
  async #unpublishableRow(): Promise<Outcome> {
    const t = this.#t;
    const id = randomUUID();
    const what = this.#random.pick(['headers over 64 KiB', 'routing key over 255 bytes', 'type over 255 bytes'] as const);
    const key = this.#random.chance(0.5) ? `hostile-${id.slice(0, 8)}` : null;
    const headers: Record<string, string> = { [HOSTILE_HEADER]: id };
    if (what === 'headers over 64 KiB') headers['x-pad'] = 'p'.repeat(this.#random.int(66_000, 100_000));
    const routingKey = what === 'routing key over 255 bytes' ? `${CHAOS_EVENT_TYPE}.${'r'.repeat(this.#random.int(250, 400))}` : CHAOS_EVENT_TYPE;
    const type = what === 'type over 255 bytes' ? `${CHAOS_EVENT_TYPE}.${'t'.repeat(this.#random.int(250, 400))}` : CHAOS_EVENT_TYPE;
    // Should it get out anyway, the harness's handler refuses it: a dead letter, never an effect.
    const payload = { eventId: id, key: key ?? 'hostile', producer: 0, poison: 'throw' };
    const injection: HostileInjection = { id, kind: 'unpublishable-row', variant: what, messageId: id, expect: { deadLetter: true } };
    this.#history.add('invoke', 'nemesis', 'inject-hostile', injection);
    await t.admin.query(
      `INSERT INTO ${quoteIdentifier(t.schema)}.outbox (message_id, type, exchange, routing_key, key, headers, payload) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [id, type, t.exchange, routingKey, key, JSON.stringify(headers), JSON.stringify(payload)],
    );
    this.#history.add('ok', 'nemesis', 'inject-hostile', injection);
    return { result: 'ok', value: { id, variant: what } };
  }

  async #publish(exchange: string, routingKey: string, id: string, type: string, payload: unknown, headers: Record<string, string>): Promise<void> {
    await this.#publishBody(exchange, routingKey, id, type, Buffer.from(JSON.stringify(payload)), headers);
  }

  /** Publishes as the relay would (confirmed and mandatory); rejects unless confirmed. */
  async #publishBody(exchange: string, routingKey: string, id: string | undefined, type: string, body: Buffer, headers: Record<string, string>): Promise<void> {
    const channel = await this.#t.channel();
    const properties: Record<string, unknown> = { type, contentType: CONTENT_TYPE, persistent: true, headers };
    if (id !== undefined) properties.messageId = id;
    const { outcome } = publishConfirmed(channel, exchange, routingKey, body, properties, {
      // Matched by a per-publish id: concurrent fault streams share the channel and may pick one event.
      deadline: sleep(PUBLISH_TIMEOUT_MS, undefined, { ref: false }),
    });
    const result = await outcome;
    if (result.kind !== 'confirmed') throw new Error(`publish not confirmed: ${result.error}`);
  }
}
