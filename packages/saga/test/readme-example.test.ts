// The README's example saga (the same steps, with a shorter payment timeout), run end to end by a
// consumer and a relay: a paid order completes and its timeout is cancelled; an unpaid one is
// cancelled by its timeout, and a payment that arrives after that is ignored and recorded.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '@mailroom/core';
import { createRelay, type Relay } from '@mailroom/outbox';
import { defineSaga, readSaga, sagaHandlers } from '@mailroom/saga';
import { testUrls, type Collected } from '../../../test/helpers.js';
import { WAIT, consumerFor, publish, setupEnv, type Env } from './support.js';

const PAYMENT_TIMEOUT_MS = 1500;
let env: Env;
let relay: Relay;
let commands: Collected;
let charges: Collected;

const contracts = (exchange: string) => ({
  OrderPlaced: defineMessage('order.placed', z.object({ orderId: z.string(), total: z.number() }), { exchange }),
  PaymentSucceeded: defineMessage('payment.succeeded', z.object({ orderId: z.string() }), { exchange }),
  PaymentTimedOut: defineMessage('order.payment-timed-out', z.object({ orderId: z.string() }), { exchange }),
  ChargePayment: defineMessage('payment.charge', z.object({ orderId: z.string(), total: z.number() }), { exchange }),
  CancelOrder: defineMessage('order.cancel', z.object({ orderId: z.string() }), { exchange }),
});
let C: ReturnType<typeof contracts>;

const OrderState = z.object({
  status: z.enum(['awaiting-payment', 'paid', 'cancelled']),
  total: z.number(),
  paymentTimeoutId: z.string().nullable(),
});

function orderSaga({ OrderPlaced, PaymentSucceeded, PaymentTimedOut, ChargePayment, CancelOrder }: ReturnType<typeof contracts>) {
  return defineSaga({
    name: 'order-fulfilment',
    state: OrderState,
    steps: (step) => [
      step(OrderPlaced, {
        starts: true,
        correlate: (p) => p.orderId,
        async handle({ state, payload, send, schedule }) {
          if (state !== undefined) return state; // a second start for the same order changes nothing
          await send(ChargePayment.create({ orderId: payload.orderId, total: payload.total }));
          const paymentTimeoutId = await schedule(PaymentTimedOut.create({ orderId: payload.orderId }), { delay: PAYMENT_TIMEOUT_MS });
          return { status: 'awaiting-payment', total: payload.total, paymentTimeoutId };
        },
      }),
      step(PaymentSucceeded, {
        correlate: (p) => p.orderId,
        async handle({ state, cancel, complete }) {
          if (state.paymentTimeoutId !== null) await cancel(state.paymentTimeoutId);
          complete();
          return { ...state, status: 'paid', paymentTimeoutId: null };
        },
      }),
      step(PaymentTimedOut, {
        correlate: (p) => p.orderId,
        async handle({ state, message, instance, send, complete }) {
          if (state.status !== 'awaiting-payment' || state.paymentTimeoutId !== message.messageId) return state;
          await send(CancelOrder.create({ orderId: instance.id }));
          complete();
          return { ...state, status: 'cancelled', paymentTimeoutId: null };
        },
      }),
    ],
  });
}

beforeAll(async () => {
  env = await setupEnv();
  C = contracts(env.exchange);
  commands = env.broker.collect(await env.broker.queueFor(env.exchange, 'order.cancel'));
  charges = env.broker.collect(await env.broker.queueFor(env.exchange, 'payment.charge'));
  relay = createRelay({ database: env.db.pool, amqp: testUrls().amqpUrl, schema: env.db.schema, pollIntervalMs: 100 });
  await relay.start();
  const { consumer } = consumerFor(env, { handlers: sagaHandlers(orderSaga(C), { schema: env.db.schema }) });
  await consumer.start();
});

afterAll(async () => {
  await commands?.stop();
  await charges?.stop();
  await relay?.stop();
  await env?.cleanup();
});

const history = async (orderId: string) => (await readSaga(env.db.pool, 'order-fulfilment', orderId, { schema: env.db.schema }))?.history ?? [];

it('a paid order completes, its timeout cancelled; an unpaid one is cancelled by its timeout, a late payment ignored', async () => {
  const [paid, unpaid] = [`o-${randomUUID()}`, `o-${randomUUID()}`];
  await publish(env, C.OrderPlaced, { orderId: paid, total: 10 });
  await publish(env, C.OrderPlaced, { orderId: unpaid, total: 20 });
  await vi.waitFor(async () => expect(await history(paid)).toHaveLength(1), WAIT);
  await publish(env, C.PaymentSucceeded, { orderId: paid });

  await vi.waitFor(async () => {
    expect(await readSaga(env.db.pool, 'order-fulfilment', unpaid, { schema: env.db.schema })).toMatchObject({ status: 'completed', state: { status: 'cancelled' } });
  }, WAIT);
  const late = await publish(env, C.PaymentSucceeded, { orderId: unpaid });
  await vi.waitFor(async () => expect((await history(unpaid)).map((h) => [h.type, h.outcome])).toEqual([
    ['order.placed', 'applied'],
    ['order.payment-timed-out', 'applied'],
    ['payment.succeeded', 'ignored'],
  ]), WAIT);
  expect((await history(unpaid))[2]?.messageId).toBe(late);
  await vi.waitFor(() => expect(commands.messages.map((m) => JSON.parse(m.content.toString()) as unknown)).toEqual([{ orderId: unpaid }]), WAIT);

  // Well after its timeout was due: the paid order's timeout never arrived.
  await new Promise((resolve) => setTimeout(resolve, PAYMENT_TIMEOUT_MS + 500));
  expect(await readSaga(env.db.pool, 'order-fulfilment', paid, { schema: env.db.schema })).toMatchObject({ status: 'completed', version: 2, state: { status: 'paid', paymentTimeoutId: null } });
  expect((await history(paid)).map((h) => h.type)).toEqual(['order.placed', 'payment.succeeded']);
  expect(commands.messages).toHaveLength(1);
  expect(charges.messages.map((m) => (JSON.parse(m.content.toString()) as { orderId: string }).orderId).sort()).toEqual([paid, unpaid].sort());
});
