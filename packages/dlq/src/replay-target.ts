import { DEAD_LETTER_REASON } from '@mailroom/core';
import { UNSEALED_SOURCE } from '@mailroom/core/internal';

/**
 * Where a replay of a dead letter goes: the exchange and routing key it is published to again,
 * or why it cannot be replayed. `dlq list` and `dlq show` print it; `replay` skips with `why`.
 */
export type ReplayTarget = { replayable: true; exchange: string; routingKey: string } | { replayable: false; why: string };

/** The columns of a stored dead letter that decide where (and whether) a replay goes. */
export interface ReplayTargetFields {
  source: string;
  reason: string;
  type: string | null;
  exchange: string | null;
  routingKey: string | null;
  payload: unknown;
  body: Buffer | null;
  changes: readonly string[];
}

/**
 * The one rule of what a replay may send, and where. Never replayed: a dead letter without a
 * valid mailroom seal (its source and destination are whatever a sender claimed), one the sink
 * had to change to store it (it is not the message that failed), one without a type, a JSON
 * payload or a destination.
 */
export function replayTargetOf(d: ReplayTargetFields): ReplayTarget {
  if (d.source === UNSEALED_SOURCE || d.reason === DEAD_LETTER_REASON.unsealed) {
    return {
      replayable: false,
      why: 'it has no valid mailroom seal: no mailroom consumer wrote it, so its source and destination are only claims (inspect it, then discard it)',
    };
  }
  if (d.changes.length > 0) {
    return { replayable: false, why: `the sink changed it to store it (${d.changes.join('; ')}), so it is not the message that failed` };
  }
  if (d.reason === DEAD_LETTER_REASON.invalidVersion) {
    return { replayable: false, why: 'its x-mailroom-version header is not a contract version, so no consumer can read it (inspect it, then discard it)' };
  }
  if (d.type === null) return { replayable: false, why: 'the message type is unknown' };
  if (d.payload === null) {
    return { replayable: false, why: d.body === null ? 'it has no body' : 'the body is not JSON, so it cannot go through the outbox' };
  }
  if (d.exchange === null || d.routingKey === null) return { replayable: false, why: 'the exchange or routing key is unknown' };
  return { replayable: true, exchange: d.exchange, routingKey: d.routingKey };
}
