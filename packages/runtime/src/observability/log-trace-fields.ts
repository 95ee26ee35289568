import { isSpanContextValid, trace } from '@opentelemetry/api';

/**
 * A pino mixin: `trace_id`, `span_id` and `trace_flags` of the active span,
 * so every log line written inside a span can be found from the trace (and
 * the other way round). Nothing is added outside a span.
 */
export function traceFields(): Record<string, string> {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const spanContext = span.spanContext();
  if (!isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId, trace_flags: `0${spanContext.traceFlags.toString(16)}`.slice(-2) };
}
