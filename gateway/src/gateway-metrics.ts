import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_LATENCY_BUCKETS, metrics } from '@iot-mesh/runtime';

/** Kinds of request the gateway answers; the `protocol` label. */
export type GatewayProtocol = 'grpc-web' | 'rest' | 'static' | 'reference' | 'other';

const LABELS = ['protocol', 'route', 'status'] as const;

/**
 * Request counts and latencies by protocol, route (gRPC path or REST
 * template, never the raw URL, so ids do not explode the series) and HTTP
 * status. A stream counts when it ends, with its whole duration.
 */
export function gatewayMetrics() {
  const requests = metrics.counter('iot_gateway_requests_total', 'Requests answered by the gateway.', LABELS);
  const duration = metrics.histogram('iot_gateway_request_duration_seconds', 'Time from request to the end of the response (streams: until closed).', LABELS, DEFAULT_LATENCY_BUCKETS);
  const closedByClient = metrics.counter('iot_gateway_client_closed_total', 'Responses the client closed before they ended (browsers leaving a page that streams).', ['protocol']);
  return {
    /** Records the request when its response ends or the client goes away. */
    observe(req: IncomingMessage, res: ServerResponse, protocol: () => GatewayProtocol, route: () => string): void {
      const started = process.hrtime.bigint();
      res.once('close', () => {
        const labels = { protocol: protocol(), route: route(), status: String(res.statusCode) };
        requests.inc(labels);
        duration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
        if (!res.writableFinished) closedByClient.inc({ protocol: labels.protocol });
      });
    },
  };
}
