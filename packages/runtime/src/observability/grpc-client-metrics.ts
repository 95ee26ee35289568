import { InterceptingCall, Interceptor, InterceptorOptions, Listener, Metadata, NextCall, StatusObject } from '@grpc/grpc-js';
import { grpcCodeName, grpcType, splitMethodPath } from './grpc-codes';
import { DEFAULT_LATENCY_BUCKETS, metrics } from './metrics-registry';

const LABELS = ['grpc_type', 'grpc_service', 'grpc_method'] as const;

/** The client-side RED metrics, named and labelled as go-grpc-prometheus does. */
export function grpcClientMetricSet() {
  return {
    started: metrics.counter('grpc_client_started_total', 'Total number of RPCs started on the client.', LABELS),
    handled: metrics.counter('grpc_client_handled_total', 'Total number of RPCs completed by the client, regardless of success or failure.', [...LABELS, 'grpc_code']),
    handling: metrics.histogram('grpc_client_handling_seconds', 'Histogram of response latency (seconds) of the gRPC until it is finished by the application.', LABELS, DEFAULT_LATENCY_BUCKETS),
    received: metrics.counter('grpc_client_msg_received_total', 'Total number of RPC stream messages received by the client.', LABELS),
    sent: metrics.counter('grpc_client_msg_sent_total', 'Total number of gRPC stream messages sent by the client.', LABELS),
  };
}

/** The method table of a generated client class (`ClientClass.service`). */
export type ClientMethods = Record<string, { path: string; requestStream: boolean; responseStream: boolean }>;

/**
 * A grpc-js client interceptor recording `grpc_client_started_total`,
 * `grpc_client_handled_total{grpc_code}`, `grpc_client_handling_seconds` and
 * message counts. Pass it in a client's `interceptors` option; the runtime's
 * `insecureClient` adds it by default. With the client's method table, every
 * method is initialised at zero, so a process that holds a client exports the
 * series before its first call.
 */
export function grpcClientMetrics(methods?: ClientMethods): Interceptor {
  const m = grpcClientMetricSet();
  for (const method of Object.values(methods ?? {})) {
    const [grpc_service, grpc_method] = splitMethodPath(method.path);
    const labels = { grpc_type: grpcType(method.requestStream, method.responseStream), grpc_service, grpc_method };
    m.started.inc(labels, 0);
    m.handled.inc({ ...labels, grpc_code: 'OK' }, 0);
    m.handling.zero(labels);
  }
  return (options: InterceptorOptions, nextCall: NextCall) => {
    const definition = options.method_definition;
    const [grpc_service, grpc_method] = splitMethodPath(definition.path);
    const labels = { grpc_type: grpcType(definition.requestStream, definition.responseStream), grpc_service, grpc_method };
    return new InterceptingCall(nextCall(options), {
      start(metadata: Metadata, listener: Listener, next: (metadata: Metadata, listener: Listener) => void) {
        m.started.inc(labels);
        const end = m.handling.startTimer(labels);
        next(metadata, {
          onReceiveMessage(message: unknown, nextMessage: (message: unknown) => void) {
            m.received.inc(labels);
            nextMessage(message);
          },
          onReceiveStatus(status: StatusObject, nextStatus: (status: StatusObject) => void) {
            end();
            m.handled.inc({ ...labels, grpc_code: grpcCodeName(status.code) });
            nextStatus(status);
          },
        });
      },
      sendMessage(message: unknown, next: (message: unknown) => void) {
        m.sent.inc(labels);
        next(message);
      },
    });
  };
}
