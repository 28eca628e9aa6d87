// Several broker URLs: a connection starts on the first that answers and, when its broker goes
// away, reconnects to the next one. Two TCP proxies in front of the test broker stand for two
// nodes of a cluster; taking one down is a node that died.
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAmqpConnection, type AmqpChannelModel } from '@mailroom/core';
import { startTcpProxy, testUrls, type TcpProxy } from '../../../test/helpers.js';

/** The local port of the proxy a connection went through (its socket's remote port). */
function remotePort(connection: AmqpChannelModel): number | undefined {
  const socket = (connection as unknown as { connection: { stream: Socket } }).connection.stream;
  return socket.remotePort;
}

describe('an AMQP connection with several URLs', () => {
  let first: TcpProxy;
  let second: TcpProxy;
  const { amqpUrl } = testUrls();

  beforeAll(async () => {
    first = await startTcpProxy(amqpUrl, 5672);
    second = await startTcpProxy(amqpUrl, 5672);
  });
  afterAll(async () => {
    await first?.close();
    await second?.close();
  });

  it('starts on the second URL when the first does not answer', async () => {
    first.setDown(true);
    const connection = createAmqpConnection({ url: [first.url(amqpUrl), second.url(amqpUrl)], reconnectDelayMs: 20 });
    try {
      const model = await connection.get();
      expect(remotePort(model)).toBe(second.port);
    } finally {
      first.setDown(false);
      await connection.close();
    }
  });

  it('fails over to the next URL when its broker goes away, and back again, and the new connection works', async () => {
    const connection = createAmqpConnection({ url: [first.url(amqpUrl), second.url(amqpUrl)], reconnectDelayMs: 20, maxReconnectDelayMs: 100 });
    const ports: number[] = [];
    connection.on('connected', (model) => ports.push(remotePort(model) ?? -1));
    try {
      const model = await connection.get();
      expect(remotePort(model)).toBe(first.port);

      first.setDown(true);
      await vi.waitFor(() => expect(ports.at(-1)).toBe(second.port), { timeout: 10_000 });
      const channel = await (await connection.get()).createChannel();
      const { queue } = await channel.assertQueue('', { exclusive: true });
      channel.sendToQueue(queue, Buffer.from('after failover'));
      const got = await vi.waitFor(async () => {
        const message = await channel.get(queue, { noAck: true });
        if (message === false) throw new Error('not yet');
        return message;
      });
      expect(got.content.toString()).toBe('after failover');
      await channel.close();

      first.setDown(false);
      second.setDown(true);
      await vi.waitFor(() => expect(ports.at(-1)).toBe(first.port), { timeout: 10_000 });
      expect(connection.connected).toBe(true);
    } finally {
      first.setDown(false);
      second.setDown(false);
      await connection.close();
    }
  });

  it('names every URL, passwords hidden, and keeps trying while all are down', async () => {
    first.setDown(true);
    second.setDown(true);
    const connection = createAmqpConnection({ url: [first.url(amqpUrl), second.url(amqpUrl)], reconnectDelayMs: 20, maxReconnectDelayMs: 50 });
    try {
      expect(connection.displayUrl).not.toContain('guest:guest');
      expect(connection.displayUrl.split(', ')).toHaveLength(2);
      const pending = connection.get();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(connection.connected).toBe(false);
      second.setDown(false);
      const model = await pending;
      expect(remotePort(model)).toBe(second.port);
    } finally {
      first.setDown(false);
      second.setDown(false);
      await connection.close();
    }
  });

  it('closing while reconnecting resolves and stops the retries', async () => {
    first.setDown(true);
    second.setDown(true);
    const connection = createAmqpConnection({ url: [first.url(amqpUrl), second.url(amqpUrl)], reconnectDelayMs: 20, maxReconnectDelayMs: 50 });
    const pending = connection.get();
    const rejected = expect(pending).rejects.toMatchObject({ code: 'STOPPED' });
    await connection.close();
    await rejected;
    first.setDown(false);
    second.setDown(false);
  });
});
