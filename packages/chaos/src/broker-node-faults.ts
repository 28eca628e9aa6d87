import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Random } from './random.js';

const run = promisify(execFile);

/** What a broker node fault did, for the history. */
export interface BrokerNodeOutcome {
  result: 'ok' | 'fail';
  value: Record<string, unknown>;
}

/** The node faults of a local RabbitMQ cluster, through its control script (`scripts/rabbit-cluster.sh`). */
export interface BrokerNodes {
  /** How many nodes the cluster has. */
  readonly nodes: number;
  /**
   * kill -9 one node's VM (`kill`) or `stop_app` it (`stop-app`), waits `ms`, then starts it
   * again and waits until it runs. Refused (`fail`) while another node is down: quorum queues
   * need a majority, and this keeps all but one node up.
   */
  fault(kind: 'kill' | 'stop-app', random: Random, ms: number): Promise<BrokerNodeOutcome>;
  /** Starts every node (`start-node` then `start-app`, both no-ops on a running node); the heal. Rejects when a node does not come back. */
  healAll(): Promise<void>;
}

/**
 * The broker node faults of a cluster started by `script` (its commands `kill N`, `start-node N`,
 * `stop-app N`, `start-app N`, N from 1 to `nodes`). Node numbers are picked by the seeded
 * random; the script's own timing (a node takes seconds to start) is not.
 */
export function createBrokerNodes(script: string, nodes: number, timeoutMs = 120_000): BrokerNodes {
  // Nodes down now, across every fault stream: at most one at a time.
  const down = new Set<number>();
  const call = async (...args: string[]): Promise<void> => {
    await run(script, args, { timeout: timeoutMs });
  };
  return {
    nodes,
    async fault(kind, random, ms) {
      if (down.size > 0) return { result: 'fail', value: { reason: `node ${[...down].join(', ')} is down: one node at a time` } };
      const node = random.int(1, nodes);
      down.add(node);
      const t0 = Date.now();
      try {
        await call(kind, String(node));
        await sleep(ms);
        await call(kind === 'kill' ? 'start-node' : 'start-app', String(node));
      } finally {
        down.delete(node);
      }
      return { result: 'ok', value: { node, downMs: ms, backAfterMs: Date.now() - t0 } };
    },
    async healAll() {
      for (let n = 1; n <= nodes; n += 1) {
        // start-node returns at once for a running VM; start_app is then a no-op unless the app was stopped.
        await call('start-node', String(n));
        await call('start-app', String(n));
      }
    },
  };
}
