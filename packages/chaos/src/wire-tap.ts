import { FRAME, FrameReader, PayloadReader, readContentHeader, type Frame } from './amqp-frames.js';
import type { ConnectionTap } from './fault-proxy.js';

/**
 * What the wire tap counts per message id and route: how often the broker delivered it (or a
 * relay published it), in all, after the heal, and at most within one second; and how often a
 * consumer gave it back (`nack`/`reject` with requeue). Watching the AMQP link itself, the
 * harness sees a requeue loop the code under test never reports.
 */
export interface DeliveryTally {
  /** `work-queue`, `dead-letter-queue` (deliveries) or `relay-publish` (publishes), as the run names them. */
  route: string;
  /** The AMQP `message-id` as sent (anything a sender put there); empty when none. */
  messageId: string;
  total: number;
  /** Counted after {@link WireTap.mark} (the heal). */
  afterMark: number;
  /** The most within any one second. */
  peakPerSecond: number;
  /** Deliveries given back by the consumer with requeue. */
  requeues: number;
}

/** Which route a delivery or publish counts under; null: not counted. */
export type RouteOf = (kind: 'deliver' | 'publish', exchange: string, routingKey: string) => string | null;

interface Tally extends DeliveryTally {
  window: number[];
}

type Pending = { kind: 'deliver'; tag: number; route: string | null } | { kind: 'publish'; route: string | null };

/**
 * Counts deliveries, publishes and requeues on the AMQP links of a fault proxy. Give the proxy
 * `tap.connection()` for each connection; frames it cannot read make it stop reading that
 * connection (the bytes still flow).
 */
export class WireTap {
  readonly #tallies = new Map<string, Tally>();
  readonly #routeOf: RouteOf;
  readonly #now: () => number;
  #marked = false;
  /** Frames the tap could not read (it stopped reading that connection). */
  unreadable = 0;

  constructor(routeOf: RouteOf, now: () => number = Date.now) {
    this.#routeOf = routeOf;
    this.#now = now;
  }

  /** From now on, counts go to `afterMark` too (called at the heal). */
  mark(): void {
    this.#marked = true;
  }

  /** The readers of one proxied connection: `up` gets the client's bytes, `down` the broker's. */
  connection(): ConnectionTap {
    // Per channel: the method whose content header comes next, and delivery tag -> tally.
    const pendingDown = new Map<number, Pending>();
    const pendingUp = new Map<number, Pending>();
    const unacked = new Map<number, Map<number, Tally>>();
    let broken = false;
    const guard =
      (read: (frame: Frame) => void) =>
      (frame: Frame): void => {
        if (broken) return;
        try {
          read(frame);
        } catch {
          broken = true;
          this.unreadable += 1;
        }
      };
    const tagsOf = (channel: number): Map<number, Tally> => {
      let tags = unacked.get(channel);
      if (tags === undefined) {
        tags = new Map<number, Tally>();
        unacked.set(channel, tags);
      }
      return tags;
    };
    const settle = (channel: number, tag: number, multiple: boolean, requeue: boolean): void => {
      const tags = unacked.get(channel);
      if (tags === undefined) return;
      const hit = multiple ? [...tags.keys()].filter((t) => t <= tag || tag === 0) : [tag];
      for (const t of hit) {
        const tally = tags.get(t);
        if (tally !== undefined && requeue) tally.requeues += 1;
        tags.delete(t);
      }
    };
    const down = new FrameReader(
      false,
      guard((frame) => {
        if (frame.type === FRAME.method) {
          const r = new PayloadReader(frame.payload);
          const cls = r.u16();
          const method = r.u16();
          if (cls === 60 && method === 60) {
            r.shortstr(); // consumer tag
            const tag = r.u64();
            r.u8(); // redelivered
            const exchange = r.shortstr();
            const routingKey = r.shortstr();
            pendingDown.set(frame.channel, { kind: 'deliver', tag, route: this.#routeOf('deliver', exchange, routingKey) });
          } else if (cls === 20 && (method === 40 || method === 41)) {
            unacked.delete(frame.channel); // the channel closes: its unacked deliveries go back
          }
        } else {
          const pending = pendingDown.get(frame.channel);
          pendingDown.delete(frame.channel);
          if (pending?.kind !== 'deliver' || pending.route === null) return;
          const tally = this.#count(pending.route, readContentHeader(frame.payload).messageId ?? '');
          tagsOf(frame.channel).set(pending.tag, tally);
        }
      }),
    );
    const up = new FrameReader(
      true,
      guard((frame) => {
        if (frame.type === FRAME.method) {
          const r = new PayloadReader(frame.payload);
          const cls = r.u16();
          const method = r.u16();
          if (cls === 60 && method === 40) {
            r.u16(); // reserved
            const exchange = r.shortstr();
            const routingKey = r.shortstr();
            pendingUp.set(frame.channel, { kind: 'publish', route: this.#routeOf('publish', exchange, routingKey) });
          } else if (cls === 60 && (method === 80 || method === 120)) {
            const tag = r.u64();
            const bits = r.u8();
            settle(frame.channel, tag, (bits & 1) === 1, method === 120 && (bits & 2) === 2);
          } else if (cls === 60 && method === 90) {
            const tag = r.u64();
            settle(frame.channel, tag, false, (r.u8() & 1) === 1);
          } else if (cls === 20 && (method === 40 || method === 41)) {
            unacked.delete(frame.channel);
          }
        } else {
          const pending = pendingUp.get(frame.channel);
          pendingUp.delete(frame.channel);
          if (pending?.kind !== 'publish' || pending.route === null) return;
          this.#count(pending.route, readContentHeader(frame.payload).messageId ?? '');
        }
      }),
    );
    // Never throws into the proxy: a stream it cannot read is left alone (and counted).
    const feed = (reader: FrameReader) => (chunk: Buffer) => {
      if (broken) return;
      try {
        reader.push(chunk);
      } catch {
        broken = true;
        this.unreadable += 1;
      }
    };
    return { up: feed(up), down: feed(down) };
  }

  #count(route: string, messageId: string): Tally {
    const id = `${route}\u0000${messageId}`;
    let tally = this.#tallies.get(id);
    if (tally === undefined) {
      tally = { route, messageId, total: 0, afterMark: 0, peakPerSecond: 0, requeues: 0, window: [] };
      this.#tallies.set(id, tally);
    }
    const now = this.#now();
    tally.total += 1;
    if (this.#marked) tally.afterMark += 1;
    tally.window.push(now);
    while ((tally.window[0] as number) <= now - 1000) tally.window.shift();
    tally.peakPerSecond = Math.max(tally.peakPerSecond, tally.window.length);
    return tally;
  }

  /** What was counted more than once, or given back: single deliveries are the rule and left out. */
  tallies(): DeliveryTally[] {
    const out: DeliveryTally[] = [];
    for (const t of this.#tallies.values()) {
      if (t.total > 1 || t.requeues > 0) {
        out.push({ route: t.route, messageId: t.messageId, total: t.total, afterMark: t.afterMark, peakPerSecond: t.peakPerSecond, requeues: t.requeues });
      }
    }
    return out;
  }
}
