import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** The faults a proxy link can have at one time; `heal()` clears them all. */
export interface LinkFaults {
  /** Extra delay per chunk, in each direction, in ms. */
  latencyMs: number;
  /** Hold every byte (sockets stay open, nothing flows) until healed. */
  blackhole: boolean;
  /** Bytes per second in each direction, or 0 for unlimited. */
  bandwidth: number;
  /** Refuse new connections. */
  refuse: boolean;
}

/** A TCP proxy in front of PostgreSQL or RabbitMQ that injects faults on its link. */
export interface FaultProxy {
  /** The name in the history (`pg`, `amqp`). */
  readonly name: string;
  readonly port: number;
  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string;
  /** Open client connections. */
  connections(): number;
  /** Destroys every open connection (a reset); new connections still pass. */
  reset(): number;
  /** Changes some faults; the others stay. */
  set(faults: Partial<LinkFaults>): void;
  /** Clears every fault; held bytes flow again. */
  heal(): void;
  close(): Promise<void>;
}

/** The readers of one proxied connection: `up` sees the client's bytes, `down` the server's. */
export interface ConnectionTap {
  up: (chunk: Buffer) => void;
  down: (chunk: Buffer) => void;
}

/** Watches the bytes of each proxied connection as they are passed on (see `WireTap`). */
export interface ProxyTap {
  /** Called once per connection. */
  connection(): ConnectionTap;
}

/** Starts a fault proxy to `host:port`; with a `tap`, every byte it passes on is shown to it too. */
export async function startFaultProxy(name: string, target: { host: string; port: number }, tap?: ProxyTap): Promise<FaultProxy> {
  const faults: LinkFaults = { latencyMs: 0, blackhole: false, bandwidth: 0, refuse: false };
  const pairs = new Set<{ client: Socket; upstream: Socket }>();

  // One ordered pipe per direction: chunks wait for latency, blackhole and bandwidth in turn.
  const pipe = (from: Socket, to: Socket, observe: ((chunk: Buffer) => void) | undefined): void => {
    let chain = Promise.resolve();
    let pending = 0;
    const pass = (chunk: Buffer): void => {
      // Seen as it is passed on: bytes a reset throws away never reached the other side.
      observe?.(chunk);
      to.write(chunk);
    };
    from.on('data', (chunk: Buffer) => {
      if (pending === 0 && faults.latencyMs === 0 && !faults.blackhole && faults.bandwidth === 0) {
        pass(chunk);
        return;
      }
      const arrived = Date.now();
      pending += 1;
      if (pending > 64) from.pause();
      chain = chain.then(async () => {
        while (faults.blackhole && !to.destroyed) await sleep(25);
        const wait = arrived + faults.latencyMs - Date.now();
        if (wait > 0) await sleep(wait);
        if (faults.bandwidth > 0) await sleep(Math.ceil((chunk.length / faults.bandwidth) * 1000));
        if (!to.destroyed) pass(chunk);
        pending -= 1;
        if (pending <= 16 && from.isPaused()) from.resume();
      });
    });
  };

  const server: Server = createServer((client) => {
    if (faults.refuse) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: target.host, port: target.port });
    upstream.setNoDelay(true);
    client.setNoDelay(true);
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    const watch = tap?.connection();
    pipe(client, upstream, watch?.up);
    pipe(upstream, client, watch?.down);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const reset = (): number => {
    const n = pairs.size;
    for (const p of pairs) {
      p.client.resetAndDestroy();
      p.upstream.destroy();
    }
    pairs.clear();
    return n;
  };
  return {
    name,
    port,
    url(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    connections: () => pairs.size,
    reset,
    set(change) {
      Object.assign(faults, change);
    },
    heal() {
      Object.assign(faults, { latencyMs: 0, blackhole: false, bandwidth: 0, refuse: false });
    },
    async close() {
      faults.blackhole = false;
      reset();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
