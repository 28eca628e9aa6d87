import { context, propagation, trace, SpanKind, SpanStatusCode, type Context, type Span, type Tracer } from '@opentelemetry/api';

/** The tracer all mailroom spans come from. */
export function mailroomTracer(): Tracer {
  return trace.getTracer('mailroom');
}

/** Writes the trace context of `ctx` (default: the active one) into `headers` (traceparent, tracestate). */
export function injectTraceContext(headers: Record<string, string>, ctx: Context = context.active()): Record<string, string> {
  propagation.inject(ctx, headers);
  return headers;
}

/** Reads a trace context from message headers; returns a context to start child spans in. */
export function extractTraceContext(headers: Record<string, unknown> | undefined): Context {
  const carrier: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (typeof v === 'string') carrier[k] = v;
    else if (Buffer.isBuffer(v)) carrier[k] = v.toString('utf8');
  }
  return propagation.extract(context.active(), carrier);
}

/**
 * Runs `fn` inside a span named `name`; records an exception and error status when it throws.
 * `parent` sets the parent context (for a consumer: the producer's, read from the headers).
 */
export async function withSpan<T>(
  name: string,
  options: { kind?: SpanKind; attributes?: Record<string, string | number | boolean>; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const tracer = mailroomTracer();
  const parent = options.parent ?? context.active();
  const spanOptions: Parameters<Tracer['startSpan']>[1] = { kind: options.kind ?? SpanKind.INTERNAL };
  if (options.attributes) spanOptions.attributes = options.attributes;
  const span = tracer.startSpan(name, spanOptions, parent);
  try {
    const result = await context.with(trace.setSpan(parent, span), () => fn(span));
    span.setStatus({ code: SpanStatusCode.OK });
    return result;
  } catch (error) {
    span.recordException(error as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
    throw error;
  } finally {
    span.end();
  }
}

/**
 * Starts a span whose parent is the trace context carried in `headers` (the producer's), and
 * writes the new span's context back into `headers`, so whoever receives them continues from
 * this span. The caller ends the span.
 */
export function startSpanFromHeaders(
  name: string,
  kind: SpanKind,
  headers: Record<string, unknown>,
  attributes: Record<string, string | number | boolean> = {},
): Span {
  const parent = extractTraceContext(headers);
  const span = mailroomTracer().startSpan(name, { kind, attributes }, parent);
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(parent, span), carrier);
  Object.assign(headers, carrier);
  return span;
}

export { SpanKind, SpanStatusCode };
export type { Span };
