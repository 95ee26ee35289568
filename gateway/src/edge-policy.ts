/*
 * What both renderings of the edge (the Envoy config and the Node gateway)
 * must agree on beyond the route table itself.
 */

/**
 * Longest a unary call may take at the edge (a shorter client deadline wins).
 * SendCommand waits up to 60 s for a device's reply; the rest is headroom.
 */
export const UNARY_TIMEOUT_MS = 65_000;

/** Largest request body the edge reads (gRPC-Web message or REST JSON). */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/** The browser-facing CORS policy. */
export const corsPolicy = {
  allowMethods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
  /** What gRPC-Web clients and REST callers send, plus auth and trace context. */
  allowHeaders: [
    'authorization',
    'content-type',
    'x-grpc-web',
    'x-user-agent',
    'grpc-timeout',
    'traceparent',
    'tracestate',
    'x-request-id',
  ],
  /** gRPC-Web puts status into headers when a call fails before any message; scripts must be able to read them. */
  exposeHeaders: ['grpc-status', 'grpc-message', 'grpc-status-details-bin', 'x-request-id'],
  maxAgeSeconds: 86400,
};

/**
 * The origins the Node gateway allows besides its own, from
 * GATEWAY_CORS_ORIGINS (comma-separated; `*` allows any, never the default).
 * Unset means same origin only, so no other site's scripts can call the API
 * with a user's token. CORS_ALLOWED_ORIGINS, the former name, is read when
 * the new one is unset.
 */
export function corsOriginsFromEnv(env: NodeJS.ProcessEnv): string[] {
  const raw = env.GATEWAY_CORS_ORIGINS ?? env.CORS_ALLOWED_ORIGINS ?? '';
  return raw.split(',').map((o) => o.trim()).filter(Boolean);
}
