import type { FaultProxy, LinkFaults } from './fault-proxy.js';

/**
 * Several fault proxies (one per node of a cluster) as one link: every fault is set on all of
 * them at once, so a link fault breaks the way to the whole cluster (failing over to another
 * node is no way around it), and `url` maps each node's URL to its own proxy.
 */
export function faultProxyGroup(name: string, members: readonly FaultProxy[], urls: readonly string[]): FaultProxy {
  const first = members[0];
  if (first === undefined || members.length !== urls.length) throw new Error('faultProxyGroup: one proxy per URL');
  return {
    name,
    port: first.port,
    url: (url) => members[Math.max(0, urls.indexOf(url))]?.url(url) ?? url,
    connections: () => members.reduce((n, p) => n + p.connections(), 0),
    reset: () => members.reduce((n, p) => n + p.reset(), 0),
    set(faults: Partial<LinkFaults>) {
      for (const p of members) p.set(faults);
    },
    heal() {
      for (const p of members) p.heal();
    },
    async close() {
      for (const p of members) await p.close();
    },
  };
}
