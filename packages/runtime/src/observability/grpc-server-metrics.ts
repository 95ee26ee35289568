import { status as GrpcStatus } from '@grpc/grpc-js';
import { toServiceError } from '../errors';
import type { Middleware, ServiceRegistration } from '../rpc';
import { grpcCodeName, grpcType, splitMethodPath } from './grpc-codes';
import { DEFAULT_LATENCY_BUCKETS, metrics } from './metrics-registry';

const LABELS = ['grpc_type', 'grpc_service', 'grpc_method'] as const;

/** The server-side RED metrics, named and labelled as go-grpc-prometheus does. */
export function grpcServerMetricSet() {
  return {
    started: metrics.counter('grpc_server_started_total', 'Total number of RPCs started on the server.', LABELS),
    handled: metrics.counter('grpc_server_handled_total', 'Total number of RPCs completed on the server, regardless of success or failure.', [...LABELS, 'grpc_code']),
    handling: metrics.histogram('grpc_server_handling_seconds', 'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.', LABELS, DEFAULT_LATENCY_BUCKETS),
    received: metrics.counter('grpc_server_msg_received_total', 'Total number of RPC stream messages received on the server.', LABELS),
    sent: metrics.counter('grpc_server_msg_sent_total', 'Total number of gRPC stream messages sent by the server.', LABELS),
  };
}

/**
 * Why an aborted call ended. A client whose deadline passes resets the stream,
 * which the server often sees as a cancel a moment before its own deadline
 * timer fires; a reset that close to the deadline is the deadline.
 */
function abortCode(remainingMs: number): number {
  return remainingMs <= DEADLINE_SLACK_MS ? GrpcStatus.DEADLINE_EXCEEDED : GrpcStatus.CANCELLED;
}
const DEADLINE_SLACK_MS = 50;

/**
 * A middleware recording `grpc_server_started_total`,
 * `grpc_server_handled_total{grpc_code}`, `grpc_server_handling_seconds` and
 * message counts for every call. It runs outermost, so calls refused by auth
 * or validation are counted with their status code too. Every method of
 * `registrations` is initialised at zero (as go-grpc-prometheus' `Register`
 * does), so rate() and absent() work before the first call.
 *
 * A server stream's sent messages are not seen by middlewares; for those only
 * the single request is counted.
 */
export function grpcServerMetrics(registrations: ServiceRegistration[] = []): Middleware {
  const m = grpcServerMetricSet();
  const types = new Map<string, string>();
  for (const registration of registrations) {
    for (const method of Object.values(registration.definition)) {
      const [grpc_service, grpc_method] = splitMethodPath(method.path);
      const labels = { grpc_type: grpcType(method.requestStream, method.responseStream), grpc_service, grpc_method };
      types.set(method.path, labels.grpc_type);
      m.started.inc(labels, 0);
      m.handled.inc({ ...labels, grpc_code: 'OK' }, 0);
      m.handling.zero(labels);
      m.received.inc(labels, 0);
      m.sent.inc(labels, 0);
    }
  }
  return async (ctx, _request, next) => {
    const labels = { grpc_type: types.get(ctx.method) ?? (ctx.kind === 'unary' ? 'unary' : 'server_stream'), grpc_service: ctx.service, grpc_method: ctx.rpc };
    m.started.inc(labels);
    m.received.inc(labels);
    const end = m.handling.startTimer(labels);
    let code: number = GrpcStatus.OK;
    try {
      const response = await next();
      // A stream whose client went away ends quietly for the handler, but the
      // client saw CANCELLED.
      if (ctx.signal.aborted) code = abortCode(ctx.remainingMs());
      else if (ctx.kind === 'unary') m.sent.inc(labels);
      return response;
    } catch (err) {
      code = toServiceError(err).code;
      if (ctx.signal.aborted && code === GrpcStatus.UNAVAILABLE) code = abortCode(ctx.remainingMs());
      throw err;
    } finally {
      end();
      m.handled.inc({ ...labels, grpc_code: grpcCodeName(code) });
    }
  };
}
