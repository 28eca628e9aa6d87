// One trace from the producer's transaction to the message: enqueue span, publish span, headers.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import { SpanKind, context, trace } from '@opentelemetry/api';
import { defineMessage } from '@mailroom/core';
import { createRelay, enqueue } from '@mailroom/outbox';
import { createTestBroker, createTestDatabase, testUrls, type TestBroker, type TestDatabase } from '../../../test/helpers.js';
import { installRecordingTracer } from '../../../test/recording-tracer.js';

let db: TestDatabase;
let broker: TestBroker;
let tracing: ReturnType<typeof installRecordingTracer>;

beforeAll(async () => {
  tracing = installRecordingTracer();
  db = await createTestDatabase();
  broker = await createTestBroker();
});
afterAll(async () => {
  await broker?.close();
  await db?.close();
  tracing.uninstall();
});

it("the trace context goes from the producer's span through the row to the message headers", async () => {
  const exchange = broker.name('traced');
  const queue = await broker.queueFor(exchange, '#');
  const Event = defineMessage('traced.event', z.object({ n: z.number() }), { exchange });
  const received = broker.collect(queue);
  const relay = createRelay({ database: db.databaseUrl, amqp: testUrls().amqpUrl, schema: db.schema });
  await relay.start();
  const message = Event.create({ n: 1 });
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const span = trace.getTracer('test').startSpan('place order handler');
    await context.with(trace.setSpan(context.active(), span), () => enqueue(client, message, { schema: db.schema }));
    span.end();
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  await received.waitForCount(1);
  await relay.stop();
  const handlerSpan = tracing.spans.find((s) => s.name === 'place order handler');
  const enqueueSpan = tracing.spans.find((s) => s.name === 'mailroom enqueue');
  const publishSpan = tracing.spans.find((s) => s.name === 'mailroom publish');
  expect(enqueueSpan?.parent?.spanId).toBe(handlerSpan?.context.spanId);
  expect(enqueueSpan?.kind).toBe(SpanKind.PRODUCER);
  // The row carried the enqueue span's context; the publish span continues it.
  expect(publishSpan?.parent?.spanId).toBe(enqueueSpan?.context.spanId);
  expect(publishSpan?.context.traceId).toBe(handlerSpan?.context.traceId);
  expect(publishSpan?.attributes).toMatchObject({ 'messaging.message.id': message.messageId, 'mailroom.outcome': 'confirmed' });
  expect(publishSpan?.ended).toBe(true);
  // The message carries the publish span's context, for the consumer to continue.
  const traceparent = String(received.messages[0]?.properties.headers?.traceparent);
  expect(traceparent).toBe(`00-${publishSpan?.context.traceId}-${publishSpan?.context.spanId}-01`);
  await received.stop();
});
