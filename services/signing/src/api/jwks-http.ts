import http from 'node:http';
import { AddressInfo } from 'node:net';
import { Logger, PublicJwk } from '@iot-mesh/runtime';

/** The JWKS path every verifier (an edge, another platform) fetches. */
export const JWKS_PATH = '/.well-known/jwks.json';

/**
 * A small HTTP server for what must be reachable without gRPC:
 * `GET /.well-known/jwks.json` (RFC 7517 document).
 */
export async function startJwksHttpServer(
  host: string,
  port: number,
  publishedKeys: () => Promise<PublicJwk[]>,
  log: Logger,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== JWKS_PATH) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end('{"error":"method not allowed"}');
      return;
    }
    publishedKeys().then(
      (keys) => {
        res
          .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=60', 'access-control-allow-origin': '*' })
          .end(req.method === 'HEAD' ? undefined : JSON.stringify({ keys }));
      },
      (err: Error) => {
        log.warn({ err: err.message }, 'serving the JWKS failed');
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"error":"unavailable"}');
      },
    );
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  log.info({ port: bound, path: JWKS_PATH }, 'http listening');
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
