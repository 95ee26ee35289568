import type { Transport } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { injectTraceHeaders } from '@iot-mesh/runtime';
import { Cluster, RouteMethod } from './route-table';

/** Where each cluster's service listens, `host:port`. */
export type UpstreamAddresses = Record<string, string>;

/**
 * Reads `<CLUSTER>_HOST` / `<CLUSTER>_PORT` (the same variables the Envoy
 * template uses), defaulting to 127.0.0.1 and the service's default port.
 */
export function upstreamAddressesFromEnv(clusters: Cluster[], env: NodeJS.ProcessEnv = process.env): UpstreamAddresses {
  const problems: string[] = [];
  const out: UpstreamAddresses = {};
  for (const cluster of clusters) {
    const host = env[`${cluster.envPrefix}_HOST`] || '127.0.0.1';
    const rawPort = env[`${cluster.envPrefix}_PORT`] || String(cluster.defaultPort);
    const port = Number(rawPort);
    if (!Number.isInteger(port) || port < 1 || port > 65535) problems.push(`${cluster.envPrefix}_PORT: must be a port number 1..65535 (got ${JSON.stringify(rawPort)})`);
    out[cluster.name] = `${host}:${port}`;
  }
  if (problems.length > 0) throw new Error(`invalid configuration:\n  ${problems.join('\n  ')}`);
  return out;
}

/** One HTTP/2 gRPC transport per cluster; each keeps one multiplexed connection. */
export class Upstreams {
  private readonly transports = new Map<string, Transport>();
  private readonly sessions: Http2SessionManager[] = [];

  constructor(readonly addresses: UpstreamAddresses) {
    for (const [name, address] of Object.entries(addresses)) {
      const baseUrl = `http://${address}`;
      const sessionManager = new Http2SessionManager(baseUrl);
      this.sessions.push(sessionManager);
      this.transports.set(name, createGrpcTransport({ baseUrl, sessionManager }));
    }
  }

  /** Closes the connections to the services (and any call still on them). */
  close(): void {
    for (const session of this.sessions) session.abort();
  }

  /** The transport of the cluster a method is routed to. */
  transportFor(route: RouteMethod): Transport {
    const transport = this.transports.get(route.cluster.name);
    if (!transport) throw new Error(`no upstream configured for cluster ${route.cluster.name}`);
    return transport;
  }
}

/**
 * Request headers that describe the browser's HTTP exchange rather than the
 * call; everything else (authorization, trace context, custom metadata) is
 * passed to the service.
 */
const HOP_HEADERS = new Set([
  'accept',
  'accept-encoding',
  'accept-language',
  'access-control-request-headers',
  'access-control-request-method',
  'cache-control',
  'connection',
  'content-encoding',
  'content-length',
  'content-type',
  'cookie',
  'grpc-accept-encoding',
  'grpc-encoding',
  'grpc-timeout',
  'host',
  'keep-alive',
  'origin',
  'pragma',
  'priority',
  'proxy-connection',
  'referer',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  // Client claims about addresses: the gateway states the one it saw instead (below).
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
  'x-grpc-web',
  'x-user-agent',
]);

/** `::ffff:192.0.2.1` → `192.0.2.1`: one spelling per client, whichever socket family accepted it. */
function normalAddress(address: string): string {
  return address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * The headers of a browser request that go upstream as gRPC metadata.
 * `x-forwarded-for` is replaced by the socket peer alone (the gateway is the
 * edge: the peer is the one address it knows to be true); whatever the client
 * put there is dropped, so a service trusting the right-most entry
 * (SIGNING_TRUST_FORWARDED_FOR) sees the real client address.
 */
export function forwardedHeaders(incoming: Headers, remoteAddress: string | undefined): Headers {
  const out = new Headers();
  incoming.forEach((value, name) => {
    if (HOP_HEADERS.has(name) || name.startsWith('sec-') || name.startsWith(':')) return;
    out.set(name, value);
  });
  if (remoteAddress) out.set('x-forwarded-for', normalAddress(remoteAddress));
  // The service's span continues the gateway's request span (when the gateway is traced).
  return injectTraceHeaders(out);
}

/** Response metadata from a service that the browser may see (not the gRPC framing headers). */
export function copyResponseMetadata(from: Headers, to: Headers): void {
  from.forEach((value, name) => {
    if (name === 'content-type' || name.startsWith('grpc-') || name === 'date' || name === 'content-length') return;
    to.set(name, value);
  });
}
