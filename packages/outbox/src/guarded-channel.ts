import type { ConfirmChannelLike, ReturnedMessage } from '@mailroom/core/internal';

/**
 * A confirm channel that remembers what its `publish` threw. amqplib encodes a publish before it
 * writes anything and throws a `TypeError` or `RangeError` for what AMQP cannot carry (a short
 * string over 255 bytes, a header table over its 64 KiB buffer); core's `publishConfirmed` turns
 * any throw into a `failed` outcome, which the relay would retry forever. The relay asks the guard
 * after each publish and dead-letters such a row instead. One guard per channel, so core's
 * per-channel `return` listener is still registered once.
 */
export class GuardedChannel implements ConfirmChannelLike {
  #thrown: unknown;

  constructor(private readonly channel: ConfirmChannelLike) {}

  publish(exchange: string, routingKey: string, content: Buffer, options: object, callback: (error: unknown) => void): boolean {
    try {
      return this.channel.publish(exchange, routingKey, content, options, callback);
    } catch (error) {
      this.#thrown = error;
      throw error;
    }
  }

  on(event: 'return', listener: (message: ReturnedMessage) => void): unknown {
    return this.channel.on(event, listener);
  }

  /** What the last publish threw, if it threw; cleared by reading. */
  takeThrown(): unknown {
    const thrown = this.#thrown;
    this.#thrown = undefined;
    return thrown;
  }
}

const guards = new WeakMap<ConfirmChannelLike, GuardedChannel>();

/** The guard of a channel (made once per channel). */
export function guardChannel(channel: ConfirmChannelLike): GuardedChannel {
  let guard = guards.get(channel);
  if (guard === undefined) {
    guard = new GuardedChannel(channel);
    guards.set(channel, guard);
  }
  return guard;
}

/** True for what amqplib throws when it cannot encode a publish: the same row will fail the same way every time. */
export function isEncodingError(error: unknown): boolean {
  return error instanceof TypeError || error instanceof RangeError;
}

/** True for a channel closed by the broker with 406 PRECONDITION_FAILED (a body over `max_message_size`, say). */
export function isPreconditionFailed(error: unknown): boolean {
  if (error === undefined || error === null) return false;
  const code = (error as { code?: unknown }).code;
  const message = (error as { message?: unknown }).message;
  return code === 406 || (typeof message === 'string' && /PRECONDITION[_-]FAILED/.test(message));
}
