// Defect 16 (issue 9): the harness refuses PostgreSQL or RabbitMQ on another machine unless told
// `allowRemote`, and refuses before it opens any connection (no byte may leave for such a host).
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isMailroomError } from '@mailroom/core';
import { isLoopbackHost, runChaos } from '@mailroom/chaos';
import { assertLoopbackTargets } from '../src/loopback-target.js';

const LOCAL_AMQP = 'amqp://guest:guest@127.0.0.1:5672';
const LOCAL_PG = 'postgres://postgres@127.0.0.1:5432/test';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('isLoopbackHost', () => {
  it.each(['localhost', 'LOCALHOST', '127.0.0.1', '127.1.2.3', '127.1', '[::1]', '::1', '0:0:0:0:0:0:0:1', '[::ffff:127.0.0.1]'])('%s is this machine', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });
  it.each(['db.example.com', '10.0.0.5', '192.0.2.10', '128.0.0.1', '[2001:db8::1]', '::', '0.0.0.0', 'localhost.example.com', '127.0.0.1.nip.io', ''])('%s is not', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });
});

describe('assertLoopbackTargets', () => {
  const ok = (databaseUrl: string, amqpUrl = LOCAL_AMQP, env: NodeJS.ProcessEnv = {}): void => assertLoopbackTargets({ databaseUrl, amqpUrl, allowRemote: false }, env);
  it('accepts loopback hosts, Unix sockets and the drivers’ localhost defaults', () => {
    for (const url of [LOCAL_PG, 'postgres://u:p@localhost/test', 'postgresql://u@[::1]:5433/test', '/var/run/postgresql test', 'socket:/var/run/postgresql?db=test', 'postgres://u@/test?host=/tmp', 'postgres://u@/test']) {
      expect(() => ok(url), url).not.toThrow();
    }
    expect(() => ok(LOCAL_PG, 'amqp://localhost')).not.toThrow();
  });

  it('refuses a remote host, a host= parameter or PGHOST pointing away, naming the host and never the password', () => {
    const refused = (databaseUrl: string, amqpUrl = LOCAL_AMQP, env: NodeJS.ProcessEnv = {}): string => {
      try {
        ok(databaseUrl, amqpUrl, env);
      } catch (error) {
        expect(isMailroomError(error) && error.code).toBe('INVALID_CONFIG');
        return (error as Error).message;
      }
      throw new Error(`${databaseUrl} ${amqpUrl} was accepted`);
    };
    const message = refused('postgres://app:s3cret@db.example.com:5432/prod');
    expect(message).toContain('databaseUrl points at "db.example.com"');
    expect(message).toContain('allowRemote: true (mailroom chaos run --allow-remote)');
    expect(message).not.toContain('s3cret');
    expect(refused('postgres://u@127.0.0.1/test?host=10.1.2.3')).toContain('"10.1.2.3"');
    expect(refused('postgres://u@/test', LOCAL_AMQP, { PGHOST: 'db.internal' })).toContain('"db.internal"');
    expect(refused(LOCAL_PG, 'amqps://u:pw@rabbit.example.com')).toContain('amqpUrl points at "rabbit.example.com"');
  });

  it('lets allowRemote through', () => {
    expect(() => assertLoopbackTargets({ databaseUrl: 'postgres://u@db.example.com/x', amqpUrl: 'amqp://rabbit.example.com', allowRemote: true })).not.toThrow();
  });
});

describe('runChaos', () => {
  it('refuses a remote database before opening any connection', async () => {
    // Any connection attempt fails here, before a byte could leave: the refusal must come first.
    const connect = vi.spyOn(net.Socket.prototype, 'connect').mockImplementation(() => {
      throw new Error('this test allows no connection');
    });
    const run = runChaos({ databaseUrl: 'postgres://u:pw@192.0.2.10:5432/test', amqpUrl: LOCAL_AMQP, durationMs: 1000 });
    await expect(run).rejects.toThrow(/databaseUrl points at "192.0.2.10", which is not this machine/);
    await expect(runChaos({ databaseUrl: LOCAL_PG, amqpUrl: 'amqp://192.0.2.11', durationMs: 1000 })).rejects.toThrow(/amqpUrl points at "192.0.2.11"/);
    expect(connect).not.toHaveBeenCalled();
  });
});
