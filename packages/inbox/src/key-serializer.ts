/**
 * Runs work one at a time per key, in the order it was submitted: the consumer's ordering mode
 * chains each delivery of a key behind the previous one of that key, while other keys run freely.
 */
export interface KeySerializer {
  /**
   * Runs `work` once everything submitted earlier for `key` has settled. Work that rejects
   * breaks its key's chain (later work of the key is skipped); the consumer's work never rejects.
   */
  run(key: string, work: () => Promise<void>): Promise<void>;
  /** The tails of the chains still running (stop() waits for them). */
  pending(): Array<Promise<void>>;
}

/** Creates a {@link KeySerializer}; a key's chain is forgotten once its last work settled. */
export function createKeySerializer(): KeySerializer {
  const chains = new Map<string, Promise<void>>();
  return {
    run(key, work) {
      const previous = chains.get(key) ?? Promise.resolve();
      const chained = previous.then(work);
      chains.set(key, chained);
      return chained.finally(() => {
        if (chains.get(key) === chained) chains.delete(key);
      });
    },
    pending() {
      return [...chains.values()];
    },
  };
}
