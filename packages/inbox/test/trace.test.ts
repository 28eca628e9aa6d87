// The consumer span continues the producer's trace. Only @opentelemetry/api is installed, so the
// test registers a minimal W3C propagator and a recording tracer of its own.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, context, propagation, trace, SpanKind, type Context, type Span, type SpanContext, type SpanOptions, type Tracer } from '@opentelemetry/api';
import { waitFor } from '../../../test/helpers.js';
import { consumerFor, publish, setupEnv, type Env } from './support.js';

interface Recorded {
  name: string;
  kind: SpanKind | undefined;
  parent: SpanContext | undefined;
  context: SpanContext;
  attributes: Record<string, unknown>;
  ended: boolean;
}
const spans: Recorded[] = [];

const tracer = {
  startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
    const parent = trace.getSpanContext(ctx);
    const spanContext: SpanContext = { traceId: parent?.traceId ?? randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), traceFlags: 1 };
    const rec: Recorded = { name, kind: options.kind, parent, context: spanContext, attributes: { ...options.attributes }, ended: false };
    spans.push(rec);
    const span: Span = {
      spanContext: () => spanContext,
      setAttribute: (k: string, v: unknown) => ((rec.attributes[k] = v), span),
      setAttributes: (a: Record<string, unknown>) => (Object.assign(rec.attributes, a), span),
      addEvent: () => span,
      addLink: () => span,
      addLinks: () => span,
      setStatus: () => span,
      updateName: () => span,
      end: () => {
        rec.ended = true;
      },
      isRecording: () => true,
      recordException: () => undefined,
    };
    return span;
  },
} as unknown as Tracer;

let env: Env;
beforeAll(async () => {
  // What the SDK's AsyncLocalStorageContextManager does, so the active span follows async calls.
  const storage = new AsyncLocalStorage<Context>();
  context.setGlobalContextManager({
    active: () => storage.getStore() ?? ROOT_CONTEXT,
    with: (ctx, fn, thisArg, ...args) => storage.run(ctx, () => fn.call(thisArg, ...args)),
    bind: (_ctx, target) => target,
    enable() {
      return this;
    },
    disable() {
      return this;
    },
  });
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  propagation.setGlobalPropagator({
    inject(ctx, carrier, setter) {
      const sc = trace.getSpanContext(ctx);
      if (sc) setter.set(carrier, 'traceparent', `00-${sc.traceId}-${sc.spanId}-01`);
    },
    extract(ctx, carrier, getter) {
      const value = getter.get(carrier, 'traceparent');
      const m = typeof value === 'string' ? /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(value) : null;
      if (!m) return ctx;
      return trace.setSpanContext(ctx, { traceId: m[1] as string, spanId: m[2] as string, traceFlags: 1, isRemote: true });
    },
    fields: () => ['traceparent'],
  });
  env = await setupEnv();
});
afterAll(async () => {
  await env.cleanup();
  trace.disable();
  context.disable();
  propagation.disable();
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
    await waitFor(() => consumer.stats.handled === 1, { what: 'the traced message' });
    const span = spans.find((s) => s.name === `${consumer.queue} process`);
    expect(span).toBeDefined();
    expect(span?.kind).toBe(SpanKind.CONSUMER);
    expect(span?.parent).toMatchObject({ traceId, spanId: producerSpan });
    expect(span?.context.traceId).toBe(traceId);
    expect(span?.attributes).toMatchObject({ 'messaging.message.id': id, 'mailroom.outcome': 'handled', 'mailroom.attempt': 1 });
    expect(span?.ended).toBe(true);
    expect(activeInHandler?.spanId).toBe(span?.context.spanId);
    await consumer.stop();
  });
});
