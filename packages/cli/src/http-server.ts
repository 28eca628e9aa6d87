import type { Server } from 'node:http';
import { once } from 'node:events';

// Not `import { createServer } from 'node:http'`: an ES import of node:http runs every getter of
// the module to build its namespace, and one of them loads Node's bundled undici (some 20 ms of CPU at
// the sidecar's start-up, for a fetch it never makes). getBuiltinModule reads only createServer.
const { createServer } = process.getBuiltinModule('node:http');

/** What `/readyz` answers: whether the process can work, and the details (which link is down). */
export interface Readiness {
  ready: boolean;
  /** Rendered as JSON in the body, 200 or 503 alike. */
  detail: Record<string, unknown>;
}

/** What the sidecar's HTTP endpoints read. */
export interface HealthSource {
  /** True while the process is alive and not shutting down. */
  live(): boolean;
  /** Whether it can do its work (database and broker reachable), and what is down when not. */
  readiness(): Readiness;
  /** Prometheus text. */
  metrics(): Promise<string>;
}

/**
 * Serves /healthz (text), /readyz (JSON: `{"ready": …, …detail}`, 200 or 503) and /metrics.
 * Resolves once listening; returns the server and its port.
 */
export async function startHttpServer(source: HealthSource, host: string, port: number): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (path === '/healthz') return reply(source.live() ? 200 : 503, source.live() ? 'ok\n' : 'stopping\n');
    if (path === '/readyz') {
      const { ready, detail } = source.readiness();
      return reply(ready ? 200 : 503, `${JSON.stringify({ ready, ...detail })}\n`, 'application/json; charset=utf-8');
    }
    if (path === '/metrics') {
      source.metrics().then(
        (text) => reply(200, text, 'text/plain; version=0.0.4; charset=utf-8'),
        () => reply(500, 'metrics unavailable\n'),
      );
      return;
    }
    reply(404, 'not found: try /healthz, /readyz or /metrics\n');
  });
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address();
  return { server, port: typeof address === 'object' && address !== null ? address.port : port };
}
