import http, { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Code, ConnectError, createContextValues } from '@connectrpc/connect';
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from '@connectrpc/connect-node';
import { metrics } from '@iot-mesh/runtime';
import { apiReferenceHandler } from './api-reference';
import { corsPolicy } from './edge-policy';
import { EXPORT_DOWNLOAD_PATH, exportDownloadHandler } from './export-download';
import { firmwareImageHandler } from './firmware-image';
import { gatewayMetrics, GatewayProtocol } from './gateway-metrics';
import { grpcWebHandlers, REMOTE_ADDRESS } from './grpc-web';
import { isGrpcWebText, withGrpcWebText } from './grpc-web-text';
import { clientGoneSignal, handleRest, HTTP_STATUS_BY_CODE, RestRouter, statusJson } from './rest';
import { RouteTable } from './route-table';
import { serveStatic } from './static-files';
import { UpstreamAddresses, Upstreams } from './upstreams';

/** What a gateway needs to run. */
export interface GatewayOptions {
  table: RouteTable;
  upstreams: UpstreamAddresses;
  /** Origins allowed to call from browsers; `['*']` allows any. */
  corsOrigins: string[];
  /** Folder of the built dashboard; no static files when unset. */
  staticDir?: string;
  /** Called for each failure the gateway itself caused (not the services' errors, not clients going away). */
  onError?: (err: unknown) => void;
  /** Called when a client closed a response before its end (a browser leaving a page that streams): not an error. */
  onClientClosed?: (info: { path: string; reason: string }) => void;
}

/** A running gateway. */
export interface Gateway {
  server: http.Server;
  port: number;
  close(): Promise<void>;
}

const GRPC_WEB_CONTENT_TYPE = /^application\/grpc-web/i;

function applyCors(req: IncomingMessage, res: ServerResponse, origins: string[]): boolean {
  const origin = req.headers.origin;
  if (!origin) return false;
  const allowed = origins.includes('*') || origins.includes(origin);
  res.setHeader('vary', 'origin');
  if (!allowed) return false;
  res.setHeader('access-control-allow-origin', origin);
  res.setHeader('access-control-expose-headers', corsPolicy.exposeHeaders.join(','));
  return true;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Headers): void {
  const text = JSON.stringify(body);
  headers?.forEach((value, name) => res.setHeader(name, value));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Builds the gateway's request handler from the route table: gRPC-Web (binary
 * and text) on the gRPC paths, REST on the `google.api.http` paths, CORS for
 * both, and the dashboard's files for everything else.
 */
export function createGatewayHandler(options: GatewayOptions): { handle: (req: IncomingMessage, res: ServerResponse) => void; upstreams: Upstreams } {
  const { table, corsOrigins } = options;
  const upstreams = new Upstreams(options.upstreams);
  const grpcWeb = grpcWebHandlers(table, upstreams);
  const rest = new RestRouter(table);
  const exportDownload = exportDownloadHandler(table, upstreams);
  const firmwareImages = firmwareImageHandler(table, upstreams);
  const report = options.onError ?? (() => {});
  const reference = apiReferenceHandler(table);
  const requestMetrics = gatewayMetrics();

  async function route(req: IncomingMessage, res: ServerResponse, url: URL, seen: { protocol: GatewayProtocol; route: string }): Promise<void> {
    const corsAllowed = applyCors(req, res, corsOrigins);
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method']) {
      if (corsAllowed) {
        res.setHeader('access-control-allow-methods', corsPolicy.allowMethods.join(','));
        res.setHeader('access-control-allow-headers', corsPolicy.allowHeaders.join(','));
        res.setHeader('access-control-max-age', String(corsPolicy.maxAgeSeconds));
      }
      res.writeHead(corsAllowed ? 204 : 403).end();
      return;
    }
    if (url.pathname === '/healthz') {
      sendJson(res, 200, { status: 'SERVING' });
      return;
    }
    if (url.pathname === '/metrics' && req.method === 'GET') {
      const text = await metrics.text();
      res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
      return;
    }
    const contentType = req.headers['content-type'] ?? '';
    const grpcWebHandler = grpcWeb.get(url.pathname);
    if (grpcWebHandler && GRPC_WEB_CONTENT_TYPE.test(contentType)) {
      seen.protocol = 'grpc-web';
      seen.route = url.pathname;
      const contextValues = createContextValues().set(REMOTE_ADDRESS, req.socket.remoteAddress);
      const handler = isGrpcWebText(contentType) ? withGrpcWebText(grpcWebHandler) : grpcWebHandler;
      const response = await handler(universalRequestFromNodeRequest(req, res, undefined, contextValues));
      await universalResponseToNodeResponse(response, res);
      return;
    }
    if (url.pathname === EXPORT_DOWNLOAD_PATH) {
      seen.protocol = 'rest';
      seen.route = `GET ${EXPORT_DOWNLOAD_PATH}`;
      await exportDownload(req, res, url);
      return;
    }
    if (url.pathname.endsWith('/image') && (await firmwareImages(req, res, url))) {
      seen.protocol = 'rest';
      seen.route = `${req.method} firmware image`;
      return;
    }
    const match = rest.match(req.method ?? 'GET', url.pathname);
    if (match && match !== 'method-not-allowed') {
      seen.protocol = 'rest';
      seen.route = `${match.binding.verb} ${match.binding.template.source}`;
      const result = await handleRest(match, url, req, upstreams, table, clientGoneSignal(res));
      sendJson(res, result.status, result.body, result.headers);
      return;
    }
    if (reference(req, res, url.pathname)) {
      seen.protocol = 'reference';
      seen.route = url.pathname.startsWith('/docs') ? '/docs' : url.pathname;
      return;
    }
    if (options.staticDir && serveStatic(options.staticDir, req, res, url.pathname)) {
      seen.protocol = 'static';
      seen.route = 'static';
      return;
    }
    const error =
      match === 'method-not-allowed'
        ? new ConnectError(`method ${req.method} is not allowed on ${url.pathname}`, Code.Unimplemented)
        : new ConnectError(`no route for ${req.method} ${url.pathname}`, Code.NotFound);
    sendJson(res, match === 'method-not-allowed' ? 405 : HTTP_STATUS_BY_CODE[error.code], statusJson(error, table.registry));
  }

  return {
    upstreams,
    handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://gateway');
      const seen: { protocol: GatewayProtocol; route: string } = { protocol: 'other', route: url.pathname === '/healthz' || url.pathname === '/metrics' ? url.pathname : 'unmatched' };
      requestMetrics.observe(req, res, () => seen.protocol, () => seen.route);
      route(req, res, url, seen).catch((err) => {
        // A browser leaving a page closes its streams mid-response: expected, so no stack trace.
        if (req.destroyed || res.destroyed) {
          options.onClientClosed?.({ path: url.pathname, reason: err instanceof Error ? err.message : String(err) });
          return;
        }
        report(err);
        if (!res.headersSent) sendJson(res, 500, { code: Code.Internal, message: 'gateway error' });
        else res.destroy();
      });
    },
  };
}

/**
 * Requests Node's HTTP parser refuses before any handler runs (a request line
 * or headers above its 16 KiB limit, malformed syntax) get a `google.rpc.Status`
 * body like every other error, instead of Node's bare status line.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
  const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
  const body = JSON.stringify(tooLarge ? { code: Code.ResourceExhausted, message: 'request line or headers larger than the gateway takes' } : { code: Code.InvalidArgument, message: 'malformed HTTP request' });
  const head = tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request';
  socket.end(`HTTP/1.1 ${head}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/** Starts the gateway on host:port (0 picks a free port). */
export async function startGateway(options: GatewayOptions & { host?: string; port: number }): Promise<Gateway> {
  const { handle, upstreams } = createGatewayHandler(options);
  const server = http.createServer(handle);
  server.on('clientError', answerClientError);
  // Streams stay open as long as the browser watches.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        upstreams.close();
      }),
  };
}
