import { isIPv4, isIPv6 } from 'node:net';
import { MailroomError } from '@mailroom/core';

/**
 * True for a host that is this machine: `localhost`, 127.0.0.0/8 (in any form the URL parser
 * normalises, such as `127.1`), `::1` and IPv4-mapped 127.x.
 */
export function isLoopbackHost(host: string): boolean {
  let h = host.trim().toLowerCase();
  if (h === 'localhost') return true;
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (isIPv6(h)) {
    const normalised = new URL(`http://[${h}]`).hostname;
    return normalised === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(normalised);
  }
  let parsed: string;
  try {
    // The WHATWG parser reads 127.1, 0x7f.1 or 2130706433 as the IPv4 address they name.
    parsed = new URL(`http://${h}`).hostname;
  } catch {
    return false;
  }
  return isIPv4(parsed) && parsed.startsWith('127.');
}

/** Where a PostgreSQL URL connects, as node-postgres reads it; null for a Unix socket (local). */
function postgresHost(url: string, env: NodeJS.ProcessEnv): string | null {
  if (url.startsWith('/')) return null;
  let u: URL;
  let hostname: string;
  try {
    u = new URL(url);
    hostname = decodeURIComponent(u.hostname);
  } catch {
    // An empty host with credentials (postgres://user@/db) is no valid URL; node-postgres reads it as no host.
    u = new URL(url.replace('@/', '@placeholder.invalid/'));
    hostname = '';
  }
  if (u.protocol === 'socket:') return null;
  const host = u.searchParams.get('host') ?? hostname;
  if (host.startsWith('/')) return null;
  return host !== '' ? host : (env.PGHOST ?? 'localhost');
}

/** Where an AMQP URL connects (amqplib defaults an empty host to localhost). */
function amqpHost(url: string): string {
  const host = new URL(url).hostname;
  return host !== '' ? host : 'localhost';
}

/**
 * Refuses a run against PostgreSQL or RabbitMQ on another machine unless `allowRemote`: the
 * harness terminates backends, resets links, publishes hostile messages and, when allowed,
 * restarts servers. Checked before any connection is opened. Never prints the URLs' passwords.
 */
export function assertLoopbackTargets(targets: { databaseUrl: string; amqpUrl: string; allowRemote: boolean }, env: NodeJS.ProcessEnv = process.env): void {
  if (targets.allowRemote) return;
  const remote: string[] = [];
  let pg: string | null;
  let amqp: string;
  try {
    pg = postgresHost(targets.databaseUrl, env);
    // A cluster's node URLs, comma-separated: every one must be this machine.
    amqp = targets.amqpUrl
      .split(',')
      .map((u) => amqpHost(u.trim()))
      .find((h) => !isLoopbackHost(h)) ?? 'localhost';
  } catch {
    throw new MailroomError('INVALID_CONFIG', 'chaos options: databaseUrl and amqpUrl must be URLs (postgres://…, amqp://…).');
  }
  if (pg !== null && !isLoopbackHost(pg)) remote.push(`databaseUrl points at ${JSON.stringify(pg)}`);
  if (!isLoopbackHost(amqp)) remote.push(`amqpUrl points at ${JSON.stringify(amqp)}`);
  if (remote.length === 0) return;
  throw new MailroomError(
    'INVALID_CONFIG',
    `chaos options: ${remote.join(' and ')}, which is not this machine (127.0.0.0/8, ::1, localhost). ` +
      'The harness terminates database sessions, breaks links and publishes hostile messages: if that server is yours to break, ' +
      'say so with allowRemote: true (mailroom chaos run --allow-remote).',
  );
}
