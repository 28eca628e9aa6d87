// Issue 9, defect 10: start() retried permanent broker errors forever (403 without configure
// permission, reserved `amq.*` names, names over 255 bytes) and names were not validated. Names
// are now checked when the consumer is created, and start() rejects on what retrying cannot fix.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MailroomError } from '@mailroom/core';
import { createConsumer, handler, type ConsumerOptions } from '@mailroom/inbox';
import { startTcpProxy, testUrls } from '../../../test/helpers.js';
import { OrderPlaced, consumerFor, effects, publish, recordEffect, setupEnv, type Env } from './support.js';

let env: Env;
beforeAll(async () => {
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
});

/** Settles with how start() ended, or 'pending' after `ms`. */
async function startWithin(start: Promise<void>, ms: number): Promise<unknown> {
  return Promise.race([
    start.then(
      () => 'resolved',
      (error: unknown) => error,
    ),
    new Promise((resolve) => setTimeout(() => resolve('pending'), ms).unref()),
  ]);
}

function rabbitmqctl(...args: string[]): void {
  execFileSync('rabbitmqctl', args, { stdio: 'ignore' });
}

describe('names are validated when the consumer is created (issue 9, defect 10)', () => {
  const base = (): ConsumerOptions => ({
    name: 'valid-name',
    db: env.db.pool,
    amqp: testUrls().amqpUrl,
    handlers: [handler(OrderPlaced(env.exchange), async () => undefined)],
  });
  const cases: Array<[string, Partial<ConsumerOptions>, RegExp]> = [
    ['a reserved amq.* queue', { queue: 'amq.orders' }, /"queue".*amq\./],
    ['a queue over 255 bytes', { queue: 'q'.repeat(256) }, /"queue".*255 bytes/],
    ['a queue of 200 characters but 400 bytes', { queue: 'é'.repeat(200) }, /"queue".*255 bytes/],
    ['a queue whose delay queues would pass 255 bytes', { queue: 'q'.repeat(250) }, /"queue".*delay queue/],
    ['a queue with a control character', { queue: 'orders\u0000' }, /"queue".*control character/],
    ['a binding to a reserved exchange', { bindings: [{ exchange: 'amq.direct', routingKey: '#' }] }, /"bindings\.0\.exchange".*amq\./],
    ['a binding exchange over 255 bytes', { bindings: [{ exchange: 'x'.repeat(256), routingKey: '#' }] }, /"bindings\.0\.exchange".*255 bytes/],
    ['a binding key over 255 bytes', { bindings: [{ exchange: 'orders', routingKey: 'k'.repeat(256) }] }, /"bindings\.0\.routingKey".*255 bytes/],
    ['a reserved dead-letter queue', { deadLetters: { queue: 'amq.dead' } }, /"deadLetters\.queue".*amq\./],
    ['a dead-letter exchange over 255 bytes', { deadLetters: { exchange: 'd'.repeat(300) } }, /"deadLetters\.exchange".*255 bytes/],
  ];
  for (const [what, override, message] of cases) {
    it(`refuses ${what}, naming the option`, () => {
      let thrown: unknown;
      try {
        createConsumer({ ...base(), ...override });
      } catch (error) {
        thrown = error;
      }
      expect(thrown, what).toBeInstanceOf(MailroomError);
      expect((thrown as MailroomError).code).toBe('INVALID_CONFIG');
      expect((thrown as Error).message).toMatch(message);
    });
  }

  it('accepts amq.topic, the predeclared topic exchange, as a binding', () => {
    expect(() => createConsumer({ ...base(), bindings: [{ exchange: 'amq.topic', routingKey: 'order.#' }] })).not.toThrow();
  });
});

describe('start() rejects on permanent broker errors (issue 9, defect 10)', () => {
  it('403 ACCESS_REFUSED (a user without configure permission): start() rejects with a clear error instead of retrying', async () => {
    const user = `mailroom_test_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(8).toString('hex');
    rabbitmqctl('add_user', user, password);
    try {
      // Write and read everywhere, configure nowhere: it cannot declare its queues.
      rabbitmqctl('set_permissions', '-p', '/', user, '^$', '.*', '.*');
      const url = new URL(testUrls().amqpUrl);
      url.username = user;
      url.password = password;
      const consumer = consumerFor(env, recordEffect(env.db.schema), { amqp: url.toString() });
      const outcome = await startWithin(consumer.start(), 10_000);
      expect(outcome, 'start() settles').not.toBe('pending');
      expect(outcome).toBeInstanceOf(MailroomError);
      expect((outcome as Error).message).toMatch(/403|ACCESS.REFUSED/);
      expect((outcome as Error).message).toMatch(/permission/);
      expect((outcome as Error).message).not.toContain(password);
      await consumer.stop();
    } finally {
      rabbitmqctl('delete_user', user);
    }
  });

  it('a refused login (wrong password) rejects start() instead of retrying forever', async () => {
    const url = new URL(testUrls().amqpUrl);
    url.password = 'not-the-password';
    const consumer = consumerFor(env, recordEffect(env.db.schema), { amqp: url.toString() });
    const outcome = await startWithin(consumer.start(), 10_000);
    expect(outcome, 'start() settles').not.toBe('pending');
    expect(outcome).toBeInstanceOf(MailroomError);
    expect((outcome as Error).message).toMatch(/refused/i);
    expect((outcome as Error).message).not.toContain('not-the-password');
    await consumer.stop();
  });

  it('a transient error (broker unreachable at start) is still retried: start() resolves once the broker is back', async () => {
    const proxy = await startTcpProxy(testUrls().amqpUrl, 5672);
    try {
      proxy.setDown(true);
      const consumer = consumerFor(env, recordEffect(env.db.schema), { amqp: proxy.url(testUrls().amqpUrl) });
      const starting = consumer.start();
      expect(await startWithin(starting, 1500)).toBe('pending');
      proxy.setDown(false);
      expect(await startWithin(starting, 15_000)).toBe('resolved');
      const id = await publish(env, { orderId: 'after-outage', total: 1 });
      await expect.poll(() => effects(env, id), { timeout: 15_000 }).toBe(1);
      await consumer.stop();
    } finally {
      await proxy.close();
    }
  });
});
