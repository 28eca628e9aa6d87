// TLS to RabbitMQ: a CA, a client certificate and key go through createAmqpConnection. The broker
// here listens without TLS, so a TLS terminator in front of it (test/helpers.ts) plays the
// broker's TLS side and demands a client certificate signed by the test CA (mutual TLS).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MailroomError, createAmqpConnection } from '@mailroom/core';
import { startTlsTerminator, testUrls, type TestPki } from '../../../test/helpers.js';

describe('TLS to RabbitMQ', () => {
  let tls: Awaited<ReturnType<typeof startTlsTerminator>>;
  let pki: TestPki;
  let port: number;

  beforeAll(async () => {
    tls = await startTlsTerminator();
    pki = tls.pki;
    port = tls.port;
  });

  afterAll(async () => {
    await tls.close();
  });

  const url = (): string => `amqps://guest:guest@localhost:${port}`;

  it('connects with a CA, a client certificate and its key (mutual TLS)', async () => {
    const connection = createAmqpConnection({ url: url(), tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    try {
      const model = await connection.connectOnce();
      const channel = await model.createChannel();
      await channel.checkQueue('amq.rabbitmq.reply-to').catch(() => undefined);
      expect(connection.connected).toBe(true);
    } finally {
      await connection.close();
    }
  });

  it('fails with a clear error without the client certificate, or without the CA', async () => {
    for (const tls of [{ ca: pki.ca }, { cert: pki.clientCert, key: pki.clientKey }]) {
      const connection = createAmqpConnection({ url: url(), tls });
      const error = await connection.connectOnce().catch((e: unknown) => e);
      await connection.close();
      expect(error).toBeInstanceOf(MailroomError);
      expect((error as Error).message).toMatch(/Cannot connect to RabbitMQ at amqps:\/\/guest:\*\*\*@localhost/);
    }
  });

  it('offers SASL EXTERNAL when asked (this broker has no EXTERNAL plugin, so it refuses the mechanism by name)', async () => {
    const connection = createAmqpConnection({ url: url(), tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey }, auth: 'external' });
    const error = await connection.connectOnce().catch((e: unknown) => e);
    await connection.close();
    expect(String((error as Error).message)).toMatch(/EXTERNAL/);
  });

  it('fails over to the next URL of a cluster', async () => {
    const connection = createAmqpConnection({ url: ['amqp://guest:guest@127.0.0.1:1', testUrls().amqpUrl], reconnectDelayMs: 10 });
    try {
      await connection.get();
      expect(connection.connected).toBe(true);
      expect(connection.displayUrl).toContain('127.0.0.1:1');
    } finally {
      await connection.close();
    }
  });
});
