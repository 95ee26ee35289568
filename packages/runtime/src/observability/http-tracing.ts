import { context, Context, propagation } from '@opentelemetry/api';

/**
 * Writes the trace context of `ctx` (default: the active one) into fetch-style
 * `Headers` (`traceparent`, `tracestate`), replacing any the caller sent, so a
 * proxy's upstream call continues the proxy's own span rather than skipping
 * it. Does nothing when tracing is not started.
 */
export function injectTraceHeaders(headers: Headers, ctx: Context = context.active()): Headers {
  propagation.inject(ctx, headers, { set: (carrier, key, value) => carrier.set(key, value) });
  return headers;
}
