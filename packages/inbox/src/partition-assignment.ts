import { setTimeout as sleep } from 'node:timers/promises';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { describeError, type AmqpConnection, type Logger, type PgPoolLike } from '@mailroom/core';
import { AmqpSubscription, checkOut, type CheckedOutClient } from '@mailroom/core/internal';
import { ConsumerPartitionLease } from './partition-lease.js';
import { partitionQueueArguments, partitionQueueName } from './partition-topology.js';

/** What a {@link PartitionAssignment} needs from the consumer that owns it. */
export interface PartitionAssignmentOptions {
  consumer: string;
  schema: string;
  queue: string;
  queueType: 'classic' | 'quorum';
  count: number;
  prefetch: number;
  rebalanceMs: number;
  handoverTimeoutMs: number;
  pool: PgPoolLike;
  connection: AmqpConnection;
  logger: Logger;
  /** Called with every fresh partition channel (the consumer tracks which channels closed). */
  opened(channel: ConfirmChannel): void;
  /** Hands a delivery to the consumer; resolves once it is settled (or left to the broker). */
  dispatch(channel: ConfirmChannel, message: ConsumeMessage): Promise<void>;
  /** The partitions held changed. */
  changed(held: number[]): void;
}

/** One partition this process consumes: its own channel (so it can be given back alone) and its deliveries in flight. */
interface Slot {
  readonly partition: number;
  readonly subscription: AmqpSubscription<ConfirmChannel>;
  readonly inFlight: Set<Promise<void>>;
  consumerTag: string | undefined;
}

/**
 * Consumes the partitions this process holds a lease on, and keeps the leases fair as processes
 * come and go. Every `rebalanceMs`: count the live processes, give back what is over the fair
 * share, take free partitions up to it. Giving one back: cancel its consumer, wait for its
 * deliveries in flight (at most `handoverTimeoutMs`), close its channel (the rest goes back to
 * the head of the partition queue), and only then unlock the lease, so the next holder starts
 * after this one ended. The partition queues have `x-single-active-consumer`: even a process
 * that lost its lease session and has not noticed yet cannot be active beside the new holder.
 */
export class PartitionAssignment {
  readonly #o: PartitionAssignmentOptions;
  readonly #slots = new Map<number, Slot>();
  #session: CheckedOutClient | undefined;
  #lease: ConsumerPartitionLease | undefined;
  #loop: Promise<void> | undefined;
  #halted = false;
  readonly #wake = new AbortController();

  /** An assignment; nothing happens until `start()`. */
  constructor(options: PartitionAssignmentOptions) {
    this.#o = options;
  }

  /** The partitions consumed now, ascending. */
  get held(): number[] {
    return [...this.#slots.keys()].sort((a, b) => a - b);
  }

  /** Joins the group, takes a first share and keeps rebalancing in the background. */
  async start(): Promise<void> {
    if (this.#halted) return;
    await this.#rebalance().catch((error: unknown) => this.#lostSession(error));
    this.#loop = this.#run();
  }

  /**
   * Stops rebalancing and cancels every partition's consumer (deliveries in flight go on).
   * Always resolves: a rebalance stuck on an unreachable database gets a bounded wait.
   */
  async halt(): Promise<void> {
    if (this.#halted) return;
    this.#halted = true;
    this.#wake.abort();
    await Promise.race([this.#loop, sleep(Math.max(5000, this.#o.handoverTimeoutMs), undefined, { ref: false })]);
    await Promise.all([...this.#slots.values()].map((slot) => this.#cancel(slot)));
  }

  /** Halts, closes every partition channel (unacked deliveries go back) and ends the lease session. Always resolves. */
  async close(): Promise<void> {
    await this.halt();
    await Promise.all([...this.#slots.values()].map((slot) => slot.subscription.close()));
    this.#slots.clear();
    this.#dropSession();
  }

  async #run(): Promise<void> {
    while (!this.#halted) {
      await sleep(this.#o.rebalanceMs, undefined, { signal: this.#wake.signal, ref: false }).catch(() => undefined);
      if (this.#halted) break;
      try {
        await this.#rebalance();
      } catch (error) {
        await this.#lostSession(error);
      }
    }
  }

  async #rebalance(): Promise<void> {
    if (this.#session === undefined || this.#session.broken || this.#lease === undefined) {
      this.#dropSession();
      const session = await checkOut(this.#o.pool, (error) => this.#o.logger.warn(`consumer ${this.#o.consumer}: partition lease session lost`, { error: describeError(error) }));
      // close() may have run while the pool made us wait: nothing may be leased after it.
      if (this.#halted) {
        session.release(true);
        return;
      }
      this.#session = session;
      this.#lease = new ConsumerPartitionLease(this.#session.client, this.#o.schema, this.#o.consumer, this.#o.count, Math.max(10_000, this.#o.rebalanceMs * 10));
      await this.#lease.join();
    }
    const lease = this.#lease;
    const share = await lease.share();
    const held = lease.held;
    if (held.length > share) {
      // The highest first: what is given back is predictable in the logs.
      for (const p of held.slice(share)) {
        if (this.#halted) return;
        await this.#giveBack(p);
        await lease.giveBack(p);
      }
      this.#o.changed(this.held);
    } else if (held.length < share && !this.#halted) {
      const taken = await lease.take(share - held.length);
      // Halted meanwhile: the leases just taken go with the session at close().
      if (this.#halted) return;
      for (const p of taken) this.#open(p);
      if (taken.length > 0) this.#o.changed(this.held);
    }
  }

  /** The lease session failed: every lease may be gone, so every partition stops at once (its unacked deliveries go back in order). */
  async #lostSession(error: unknown): Promise<void> {
    this.#o.logger.warn(`consumer ${this.#o.consumer}: partition leases lost; closing its partitions and joining again`, { error: describeError(error) });
    const slots = [...this.#slots.values()];
    this.#slots.clear();
    this.#dropSession();
    await Promise.all(slots.map((slot) => slot.subscription.close()));
    if (slots.length > 0) this.#o.changed(this.held);
  }

  #dropSession(): void {
    this.#lease?.lost();
    this.#lease = undefined;
    // Destroyed, never reused: the advisory locks go with the session.
    this.#session?.release(true);
    this.#session = undefined;
  }

  #open(partition: number): void {
    const queue = partitionQueueName(this.#o.queue, partition);
    const slot: Slot = {
      partition,
      inFlight: new Set(),
      consumerTag: undefined,
      subscription: new AmqpSubscription<ConfirmChannel>({
        connection: this.#o.connection,
        label: `consumer ${this.#o.consumer} partition ${partition}`,
        logger: this.#o.logger,
        open: (connection) => connection.createConfirmChannel(),
        setup: async (ch) => {
          this.#o.opened(ch);
          await ch.assertQueue(queue, { durable: true, arguments: partitionQueueArguments(this.#o.queueType) });
          await ch.prefetch(this.#o.prefetch);
          const reply = await ch.consume(queue, (message) => {
            if (message === null) {
              // Cancelled by the broker (queue deleted, or its leader moved): start over.
              ch.close().catch(() => undefined);
              return;
            }
            const work = this.#o.dispatch(ch, message);
            slot.inFlight.add(work);
            void work.finally(() => slot.inFlight.delete(work));
          });
          slot.consumerTag = reply.consumerTag;
        },
        onClosed: () => {
          slot.consumerTag = undefined;
        },
      }),
    };
    this.#slots.set(partition, slot);
    // Subscribes in the background, retrying while the broker is away (the lease stays held).
    void slot.subscription.start().catch((error: unknown) => this.#o.logger.warn(`consumer ${this.#o.consumer}: partition ${partition} cannot subscribe`, { error: describeError(error) }));
  }

  async #cancel(slot: Slot): Promise<void> {
    const channel = slot.subscription.channel;
    const tag = slot.consumerTag;
    slot.consumerTag = undefined;
    if (channel && tag !== undefined) await Promise.race([channel.cancel(tag).catch(() => undefined), sleep(2000, undefined, { ref: false })]);
  }

  /** Hands a partition over: no new deliveries, the ones in flight finish (bounded), then its channel closes. */
  async #giveBack(partition: number): Promise<void> {
    const slot = this.#slots.get(partition);
    if (slot === undefined) return;
    await slot.subscription.halt();
    await this.#cancel(slot);
    const settled = Promise.allSettled([...slot.inFlight]);
    const timedOut = await Promise.race([settled.then(() => false), sleep(this.#o.handoverTimeoutMs, true, { ref: false })]);
    if (timedOut) this.#o.logger.warn(`consumer ${this.#o.consumer}: partition ${partition} handed over with deliveries still in flight; they go back to the queue`);
    await slot.subscription.close();
    this.#slots.delete(partition);
  }
}
