// The fault proxy on its own, in front of an echo server: it passes bytes, resets, holds them
// in a blackhole and lets them through when healed, delays them, and refuses connections.
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '@mailroom/chaos';

let echo: Server;
let proxy: FaultProxy;

beforeAll(async () => {
  echo = createServer((s) => s.pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const address = echo.address();
  proxy = await startFaultProxy('echo', { host: '127.0.0.1', port: typeof address === 'object' && address !== null ? address.port : 0 });
});
afterAll(async () => {
  await proxy.close();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
});

async function client(): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port: proxy.port });
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  return socket;
}

async function roundTrip(socket: Socket, text: string, timeoutMs = 2000): Promise<{ text: string; ms: number }> {
  const start = Date.now();
  socket.write(text);
  const [data] = (await Promise.race([once(socket, 'data'), new Promise((_, reject) => setTimeout(() => reject(new Error('no reply')), timeoutMs))])) as [Buffer];
  return { text: data.toString(), ms: Date.now() - start };
}

describe('fault proxy', () => {
  it('passes bytes both ways and resets every connection on demand', async () => {
    const s = await client();
    expect((await roundTrip(s, 'hello')).text).toBe('hello');
    expect(proxy.connections()).toBe(1);
    const closed = new Promise((resolve) => s.once('close', resolve)); // a reset: 'error' first, then 'close'
    expect(proxy.reset()).toBe(1);
    await closed;
    expect(proxy.connections()).toBe(0);
  });

  it('holds bytes in a blackhole and delivers them, in order, once healed', async () => {
    const s = await client();
    proxy.set({ blackhole: true });
    await expect(roundTrip(s, 'held', 300)).rejects.toThrow('no reply');
    proxy.heal();
    const [data] = (await once(s, 'data')) as [Buffer];
    expect(data.toString()).toBe('held');
    s.destroy();
  });

  it('adds latency, and refuses new connections while told to', async () => {
    const s = await client();
    proxy.set({ latencyMs: 150 });
    expect((await roundTrip(s, 'slow')).ms).toBeGreaterThanOrEqual(280); // 150 ms each way
    proxy.heal();
    s.destroy();
    proxy.set({ refuse: true });
    const refused = connect({ host: '127.0.0.1', port: proxy.port });
    refused.on('error', () => undefined);
    await new Promise((resolve) => refused.once('close', resolve));
    proxy.heal();
  });
});
