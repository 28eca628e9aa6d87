import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';
import { MailroomError } from '@mailroom/core';
import { createWorkbench, type Workbench } from './workbench.js';
import type { WorkbenchOptions } from './workbench-options.js';

/** Options of `startWorkbench`: the workbench's, and where to listen. */
export interface StartWorkbenchOptions extends WorkbenchOptions {
  /**
   * The address to bind. Default: `127.0.0.1` (only this machine). Any other address needs a
   * `token`: the workbench replays and discards dead letters.
   */
  host?: string;
  /** The port; 0 picks a free one. Default: 7480. */
  port?: number;
}

/** A running workbench server. */
export interface RunningWorkbench {
  /** The address it listens on, e.g. `http://127.0.0.1:7480/`. */
  url: string;
  /** The port it got. */
  port: number;
  server: Server;
  workbench: Workbench;
  /** Cancels running bulk replays, closes the server; always resolves. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** True for an address only this machine reaches. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/**
 * Serves the workbench on its own HTTP server (what `mailroom ui` runs). It binds `127.0.0.1`
 * unless told otherwise, and refuses to bind any other address without a `token`. On a
 * loopback address it answers only requests whose `Host` is that address or `localhost` (a
 * guard against DNS rebinding), unless `allowedHosts` says otherwise.
 */
export async function startWorkbench(options: StartWorkbenchOptions): Promise<RunningWorkbench> {
  const { host = '127.0.0.1', port = 7480, ...workbenchOptions } = options;
  if (!isLoopback(host) && workbenchOptions.token === undefined) {
    throw new MailroomError(
      'INVALID_CONFIG',
      `The workbench binds ${host}, which other machines can reach: give it a token (MAILROOM_UI_TOKEN, at least 16 characters), or bind 127.0.0.1.`,
    );
  }
  const server = createServer();
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address();
  const actualPort = typeof address === 'object' && address !== null ? address.port : port;
  const allowedHosts =
    workbenchOptions.allowedHosts ?? (isLoopback(host) ? [`127.0.0.1:${actualPort}`, `localhost:${actualPort}`, `[::1]:${actualPort}`, `${host}:${actualPort}`] : undefined);
  let workbench: Workbench;
  try {
    workbench = createWorkbench({ ...workbenchOptions, ...(allowedHosts === undefined ? {} : { allowedHosts }) });
  } catch (error) {
    server.close();
    throw error;
  }
  server.on('request', workbench);
  const shownHost = host.includes(':') ? `[${host}]` : host;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await workbench.close().catch(() => undefined);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    })();
    return stopped;
  };
  return { url: `http://${shownHost}:${actualPort}${workbenchOptions.basePath ?? ''}/`, port: actualPort, server, workbench, stop, [Symbol.asyncDispose]: stop };
}
