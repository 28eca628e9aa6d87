// The consumer span continues the producer's trace (with the recording tracer of test/).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { trace, SpanKind, type SpanContext } from '@opentelemetry/api';
import { installRecordingTracer } from '../../../test/recording-tracer.js';
import { WAIT, consumerFor, publish, setupEnv, type Env } from './support.js';

let env: Env;
let tracing: ReturnType<typeof installRecordingTracer>;
beforeAll(async () => {
  tracing = installRecordingTracer();
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
  tracing.uninstall();
});

describe('tracing', () => {
  it("the consumer span continues the producer's trace and is active in the handler", async () => {
    let activeInHandler: SpanContext | undefined;
    const consumer = consumerFor(env, async () => {
      activeInHandler = trace.getActiveSpan()?.spanContext();
    });
    await consumer.start();
    const traceId = randomBytes(16).toString('hex');
    const producerSpan = randomBytes(8).toString('hex');
    const id = await publish(env, { orderId: 't-1', total: 1 }, { headers: { traceparent: `00-${traceId}-${producerSpan}-01` } });
    // The state asserted is the ended span (it ends after the commit).
    const span = await vi.waitFor(() => {
      const found = tracing.spans.find((s) => s.name === `${consumer.queue} process` && s.ended);
      expect(found, 'the traced message').toBeDefined();
      return found;
    }, WAIT);
    expect(span?.kind).toBe(SpanKind.CONSUMER);
    expect(span?.parent).toMatchObject({ traceId, spanId: producerSpan });
    expect(span?.context.traceId).toBe(traceId);
    expect(span?.attributes).toMatchObject({ 'messaging.message.id': id, 'mailroom.outcome': 'handled', 'mailroom.attempt': 1 });
    expect(span?.ended).toBe(true);
    expect(activeInHandler?.spanId).toBe(span?.context.spanId);
    await consumer.stop();
  });
});
