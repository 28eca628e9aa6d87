import type { EventEmitter } from 'node:events';

/**
 * Calls each listener of `event` on its own: one that throws (or returns a promise that rejects)
 * is reported to `onError` and the others still run. `EventEmitter.emit` would throw into the
 * emitter's caller instead, which for the relay is its batch loop: a listener's bug must never
 * fail a batch, stop a loop or reach the process as an unhandled rejection. `once` listeners are
 * removed as usual.
 */
export function emitSafely(emitter: EventEmitter, event: string, args: readonly unknown[], onError: (error: unknown) => void): void {
  for (const listener of emitter.rawListeners(event)) {
    try {
      const result: unknown = (listener as (...a: unknown[]) => unknown).apply(emitter, [...args]);
      if (typeof (result as { then?: unknown } | null)?.then === 'function') (result as Promise<unknown>).then(undefined, onError);
    } catch (error) {
      onError(error);
    }
  }
}
