import type { DescMethodServerStreaming, DescMethodUnary } from '@bufbuild/protobuf';
import { createConnectRouter, createContextKey, HandlerContext } from '@connectrpc/connect';
import type { UniversalHandler } from '@connectrpc/connect/protocol';
import { MAX_REQUEST_BYTES, UNARY_TIMEOUT_MS } from './edge-policy';
import { RouteTable } from './route-table';
import { copyResponseMetadata, forwardedHeaders, Upstreams } from './upstreams';

/** The remote address of the browser, handed to handlers through context values. */
export const REMOTE_ADDRESS = createContextKey<string | undefined>(undefined, { description: 'remote-address' });

/**
 * gRPC-Web handlers for every RPC in the table, each forwarding the decoded
 * request to its service over HTTP/2 gRPC with the caller's metadata,
 * deadline and cancellation, and relaying the service's messages, metadata
 * and status (with its `google.rpc` details) unchanged.
 */
export function grpcWebHandlers(table: RouteTable, upstreams: Upstreams): Map<string, UniversalHandler> {
  // Requests are small; the limit keeps one browser from making the gateway buffer megabytes.
  const router = createConnectRouter({ grpcWeb: true, grpc: false, connect: false, readMaxBytes: MAX_REQUEST_BYTES });
  for (const route of table.methods) {
    const transport = upstreams.transportFor(route);
    const headersFor = (ctx: HandlerContext) => forwardedHeaders(ctx.requestHeader, ctx.values.get(REMOTE_ADDRESS));
    if (route.kind === 'unary') {
      const method = route.method as DescMethodUnary;
      router.rpc(method, async (request, ctx) => {
        const timeoutMs = Math.min(ctx.timeoutMs() ?? UNARY_TIMEOUT_MS, UNARY_TIMEOUT_MS);
        const response = await transport.unary(method, ctx.signal, timeoutMs, headersFor(ctx), request);
        copyResponseMetadata(response.header, ctx.responseHeader);
        copyResponseMetadata(response.trailer, ctx.responseTrailer);
        return response.message;
      });
    } else {
      const method = route.method as DescMethodServerStreaming;
      router.rpc(method, async function* (request, ctx) {
        const response = await transport.stream(method, ctx.signal, ctx.timeoutMs(), headersFor(ctx), (async function* () { yield request; })());
        copyResponseMetadata(response.header, ctx.responseHeader);
        yield* response.message;
        copyResponseMetadata(response.trailer, ctx.responseTrailer);
      });
    }
  }
  return new Map(router.handlers.map((h) => [h.requestPath, h]));
}
