import { Attributes, context, Context, Link, propagation, ROOT_CONTEXT, Span, SpanKind, SpanStatusCode, trace, TextMapGetter, TextMapSetter } from '@opentelemetry/api';
import { headers as natsHeaders, MsgHdrs } from 'nats';

/**
 * Spans for the NATS message plane, following the OpenTelemetry messaging
 * conventions (`messaging.system = nats`), with W3C trace context carried in
 * NATS message headers (`traceparent`, `tracestate`). They cost nothing when
 * no tracer provider is installed (no exporter configured): the context is
 * still passed through.
 */
const tracer = () => trace.getTracer('iot-mesh.nats');

const headerSetter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};
const headerGetter: TextMapGetter<MsgHdrs | undefined> = {
  get: (carrier, key) => (carrier?.has(key) ? carrier.get(key) : undefined),
  keys: (carrier) => (carrier ? carrier.keys() : []),
};

/** What the helpers need of a received message: `Msg` and `JsMsg` both fit. */
export interface TracedMessage {
  subject: string;
  headers?: MsgHdrs;
  data?: Uint8Array;
}

/** Writes the trace context of `ctx` (default: the active one) into NATS headers, creating them if needed. */
export function injectTraceContext(headers: MsgHdrs = natsHeaders(), ctx: Context = context.active()): MsgHdrs {
  propagation.inject(ctx, headers, headerSetter);
  return headers;
}

/** The trace context a message carries in its headers (the root context when it carries none). */
export function extractTraceContext(headers: MsgHdrs | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, headers, headerGetter);
}

/** Messaging attributes of a message on `subject`. */
function messageAttributes(subject: string, operation: 'publish' | 'process' | 'receive', extra: { messageId?: string; bodySize?: number; consumerGroup?: string }): Attributes {
  const attributes: Attributes = {
    'messaging.system': 'nats',
    'messaging.destination.name': subject,
    'messaging.operation.name': operation,
    'messaging.operation.type': operation === 'publish' ? 'send' : operation,
  };
  if (extra.messageId) attributes['messaging.message.id'] = extra.messageId;
  if (extra.bodySize !== undefined) attributes['messaging.message.body.size'] = extra.bodySize;
  if (extra.consumerGroup) attributes['messaging.consumer.group.name'] = extra.consumerGroup;
  return attributes;
}

async function runInSpan<T>(span: Span, fn: (span: Span) => Promise<T> | T): Promise<T> {
  try {
    return await context.with(trace.setSpan(context.active(), span), () => fn(span));
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
    throw err;
  } finally {
    span.end();
  }
}

/** Options of a publish span. */
export interface PublishSpanOptions {
  /** `Nats-Msg-Id` or the payload's message id. */
  messageId?: string;
  bodySize?: number;
  /** Headers to add the trace context to (new ones when omitted). */
  headers?: MsgHdrs;
}

/**
 * Runs a publish inside a PRODUCER span `publish <subject>` and hands it the
 * headers carrying that span's context:
 *
 * ```ts
 * await withPublishSpan(subject, (headers) => js.publish(subject, data, { headers, msgID }), { messageId: msgID, bodySize: data.length });
 * ```
 */
export function withPublishSpan<T>(subject: string, publish: (headers: MsgHdrs, span: Span) => Promise<T> | T, options: PublishSpanOptions = {}): Promise<T> {
  const span = tracer().startSpan(`publish ${subject}`, { kind: SpanKind.PRODUCER, attributes: messageAttributes(subject, 'publish', options) });
  const headers = options.headers ?? natsHeaders();
  injectTraceContext(headers, trace.setSpan(context.active(), span));
  return runInSpan(span, (s) => publish(headers, s));
}

/** Options of a consume span. */
export interface ProcessSpanOptions {
  messageId?: string;
  /** Durable consumer or queue group name. */
  consumerGroup?: string;
}

/**
 * Processes one message inside a CONSUMER span `process <subject>` whose
 * parent is the context the message carries, so the consumer's work (database
 * writes, further publishes) joins the publisher's trace.
 */
export function withProcessSpan<T>(message: TracedMessage, process: (span: Span) => Promise<T> | T, options: ProcessSpanOptions = {}): Promise<T> {
  const parent = extractTraceContext(message.headers);
  const span = tracer().startSpan(
    `process ${message.subject}`,
    { kind: SpanKind.CONSUMER, attributes: messageAttributes(message.subject, 'process', { ...options, bodySize: message.data?.length }) },
    parent,
  );
  return runInSpan(span, process);
}

/** Options of a batch span. */
export interface BatchSpanOptions {
  /** What the batch came from, for the span name and `messaging.destination.name` (a stream or subject filter). */
  destination: string;
  consumerGroup?: string;
  /** Further attributes (`db.*` totals, point counts). */
  attributes?: Attributes;
}

/**
 * Processes a batch of messages inside one CONSUMER span `process
 * <destination>` that is linked to every message's own trace context (one
 * link per distinct publisher span), as the messaging conventions prescribe
 * for batch receivers: each device's trace leads to the batch that stored
 * it, and the batch's database spans are its children. The SDK keeps at most
 * OTEL_SPAN_LINK_COUNT_LIMIT (default 128) links per span.
 */
export function withBatchSpan<T>(messages: readonly TracedMessage[], process: (span: Span) => Promise<T> | T, options: BatchSpanOptions): Promise<T> {
  const span = tracer().startSpan(`process ${options.destination}`, {
    kind: SpanKind.CONSUMER,
    attributes: {
      ...messageAttributes(options.destination, 'process', { consumerGroup: options.consumerGroup }),
      'messaging.batch.message_count': messages.length,
      ...options.attributes,
    },
  });
  // Reading every message's headers costs something at tens of thousands of
  // messages a second; do it only when the span is recorded.
  if (span.isRecording()) span.addLinks(messageLinks(messages));
  return runInSpan(span, process);
}

/** One link per distinct publisher span among the messages' trace contexts. */
function messageLinks(messages: readonly TracedMessage[]): Link[] {
  const links: Link[] = [];
  const seen = new Set<string>();
  for (const message of messages) {
    if (!message.headers) continue;
    const spanContext = trace.getSpanContext(extractTraceContext(message.headers));
    if (!spanContext || !trace.isSpanContextValid(spanContext)) continue;
    const key = `${spanContext.traceId}/${spanContext.spanId}`;
    if (seen.has(key)) continue;
    seen.add(key);
    links.push({ context: spanContext, attributes: { 'messaging.destination.name': message.subject } });
  }
  return links;
}
