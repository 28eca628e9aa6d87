// Only @opentelemetry/api is installed, so tracing tests register a minimal W3C propagator, an
// AsyncLocalStorage context manager and a tracer that records its spans.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { ROOT_CONTEXT, context, propagation, trace, type Context, type Span, type SpanContext, type SpanKind, type SpanOptions, type Tracer } from '@opentelemetry/api';

/** A span as the recording tracer saw it. */
export interface RecordedSpan {
  name: string;
  kind: SpanKind | undefined;
  parent: SpanContext | undefined;
  context: SpanContext;
  attributes: Record<string, unknown>;
  ended: boolean;
}

/** Installs the recording tracer globally; returns the spans it records and a way to remove it. */
export function installRecordingTracer(): { spans: RecordedSpan[]; uninstall(): void } {
  const spans: RecordedSpan[] = [];
  const tracer = {
    startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
      const parent = trace.getSpanContext(ctx);
      const spanContext: SpanContext = { traceId: parent?.traceId ?? randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), traceFlags: 1 };
      const rec: RecordedSpan = { name, kind: options.kind, parent, context: spanContext, attributes: { ...options.attributes }, ended: false };
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
  return {
    spans,
    uninstall() {
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
