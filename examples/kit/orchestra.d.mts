// Types of the parts of orchestra.mjs the TypeScript end-to-end test uses.
export function cleanupBroker(amqpUrl: string, names: { queues: string[]; exchanges: string[] }): Promise<void>;
export function waitUntil(what: string, check: () => unknown, timeoutMs: number): Promise<number>;
