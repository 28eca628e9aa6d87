import { setTimeout as sleep } from 'node:timers/promises';
import type { AmqpChannelModel, AmqpConnection } from './amqp-connection.js';
import { backoffDelay } from './backoff.js';
import { describeError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';

/** The part of an amqplib channel a subscription needs. */
export interface SubscribableChannel {
  on(event: 'error', listener: (error: Error) => void): unknown;
  once(event: 'close', listener: () => void): unknown;
  close(): Promise<void>;
}

/** Options of {@link AmqpSubscription}. */
export interface AmqpSubscriptionOptions<C extends SubscribableChannel> {
  /** The recovering connection to subscribe on. */
  connection: AmqpConnection;
  /** Who subscribes, in log lines (`consumer billing`, say). */
  label: string;
  /** Where retries and channel errors are logged. Default: silent. */
  logger?: Logger;
  /** Opens a channel on a live connection: a confirm channel or a plain one. */
  open(connection: AmqpChannelModel): Promise<C>;
  /**
   * Declares the topology and starts consuming on a fresh channel. When the broker cancels the
   * consumer (a `null` delivery), close the channel: the subscription then starts over.
   */
  setup(channel: C): Promise<void>;
  /** Turns an error of the first attempt into one `start()` throws instead of retrying. */
  fatal?(error: unknown): Error | undefined;
  /** Called each time a subscription is in place. */
  onSubscribed?(channel: C): void;
  /** Called when the subscription's channel closed, before it subscribes again. */
  onClosed?(channel: C): void;
}

/**
 * A consumer subscription that survives lost channels and connections: it opens a channel, runs
 * the caller's setup, and when that channel closes it starts over with capped exponential
 * backoff, until `halt()`. Shared by the inbox consumer and the dead-letter sink.
 */
export class AmqpSubscription<C extends SubscribableChannel> {
  readonly #o: AmqpSubscriptionOptions<C>;
  readonly #log: Logger;
  #channel: C | undefined;
  #resubscribing: Promise<void> | undefined;
  #halted = false;

  /** Creates a subscription; nothing happens until `start()`. */
  constructor(options: AmqpSubscriptionOptions<C>) {
    this.#o = options;
    this.#log = options.logger ?? silentLogger;
  }

  /** The channel of the current subscription, if one is in place. */
  get channel(): C | undefined {
    return this.#channel;
  }

  /** Subscribes, retrying until it works; rejects only with what `fatal` returns for the first attempt. */
  async start(): Promise<void> {
    this.#halted = false;
    await this.#subscribe(true);
  }

  /**
   * Stops subscribing again. A resubscription in progress (waiting for a broker that is down,
   * say) gets at most `waitMs` to finish, once: a second call returns at once. The current
   * channel stays open: see `close()`.
   */
  async halt(waitMs = 2000): Promise<void> {
    if (this.#halted) return;
    this.#halted = true;
    if (this.#resubscribing) await Promise.race([this.#resubscribing, sleep(waitMs, undefined, { ref: false })]);
  }

  /** Halts and closes the current channel (unacked deliveries go back to the queue). Always resolves. */
  async close(waitMs = 2000): Promise<void> {
    await this.halt(waitMs);
    const channel = this.#channel;
    this.#channel = undefined;
    if (channel) await Promise.race([channel.close().catch(() => undefined), sleep(waitMs, undefined, { ref: false })]);
  }

  async #subscribe(first: boolean): Promise<void> {
    for (let attempt = 1; !this.#halted; attempt++) {
      const delay = backoffDelay({ initialMs: 100, maxMs: 5000 }, attempt);
      let channel: C | undefined;
      try {
        const connection = await this.#o.connection.get();
        channel = await this.#o.open(connection);
        const ch = channel;
        this.#channel = ch;
        ch.on('error', (error: Error) => this.#log.warn(`${this.#o.label}: channel error`, { error: describeError(error) }));
        ch.once('close', () => {
          if (this.#channel !== ch) return;
          this.#channel = undefined;
          this.#o.onClosed?.(ch);
          this.#resubscribeSoon();
        });
        await this.#o.setup(ch);
        if (this.#halted) {
          // halt() began while this subscription was being set up: it must not outlive it.
          if (this.#channel === ch) this.#channel = undefined;
          await ch.close().catch(() => undefined);
          return;
        }
        this.#o.onSubscribed?.(ch);
        return;
      } catch (error) {
        if (this.#halted) return;
        if (channel && this.#channel === channel) this.#channel = undefined;
        const fatal = first ? this.#o.fatal?.(error) : undefined;
        if (fatal) throw fatal;
        this.#log.warn(`${this.#o.label}: cannot subscribe, retrying in ${delay} ms`, { error: describeError(error) });
        await channel?.close().catch(() => undefined);
        await sleep(delay);
      }
    }
  }

  #resubscribeSoon(): void {
    if (this.#halted || this.#resubscribing) return;
    this.#resubscribing = sleep(100)
      .then(() => this.#subscribe(false))
      .catch((error: unknown) => this.#log.error(`${this.#o.label}: resubscribe failed`, { error: describeError(error) }))
      .finally(() => {
        this.#resubscribing = undefined;
      });
  }
}
