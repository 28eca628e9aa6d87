// tracingIsOff: a publisher skips its span only while no OpenTelemetry SDK part is registered.
import { afterEach, expect, it } from 'vitest';
import { propagation, trace, type Tracer } from '@opentelemetry/api';
import { tracingIsOff } from '../src/confirmed-publish.js';
import { installRecordingTracer } from '../../../test/recording-tracer.js';

afterEach(() => {
  trace.disable();
  propagation.disable();
});

it('is true with the bare API and false once a tracer provider or a propagator is registered', () => {
  expect(tracingIsOff()).toBe(true);
  trace.setGlobalTracerProvider({ getTracer: () => ({}) as Tracer });
  expect(tracingIsOff()).toBe(false);
  trace.disable();
  expect(tracingIsOff()).toBe(true);
  propagation.setGlobalPropagator({ inject: () => undefined, extract: (ctx) => ctx, fields: () => ['traceparent'] });
  expect(tracingIsOff()).toBe(false);
  propagation.disable();
  const tracing = installRecordingTracer();
  expect(tracingIsOff()).toBe(false);
  tracing.uninstall();
  expect(tracingIsOff()).toBe(true);
});
