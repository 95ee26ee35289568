import http from 'node:http';
import { AddressInfo } from 'node:net';
import { z } from 'zod';
import { env } from '../config';
import { registry } from './metrics-registry';

/**
 * Variables of the metrics endpoint. METRICS_PORT unset: no endpoint (so
 * several services started in one test process do not fight over a port);
 * `0`: any free port (logged, and reported as `metricsPort`); otherwise that port.
 */
export const metricsEnv = {
  METRICS_PORT: z
    .string()
    .optional()
    .refine((v) => v === undefined || (/^\d+$/.test(v) && Number(v) <= 65535), 'must be a port number (0 = any free port)')
    .transform((v) => (v === undefined ? undefined : Number(v))),
  METRICS_HOST: env.string({ fallback: '127.0.0.1' }),
};

/** A running `/metrics` endpoint. */
export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves the process registry in the Prometheus text format on
 * `http://host:port/metrics` (and answers `/` with a pointer to it).
 */
export async function startMetricsServer(host: string, port: number): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`collecting metrics failed: ${err.message}\n`),
      );
      return;
    }
    res.writeHead(path === '/' ? 200 : 404, { 'content-type': 'text/plain' }).end(path === '/' ? 'metrics at /metrics\n' : 'not found\n');
  });
  // Scrapes are short; do not hold the process open on idle keep-alive sockets.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
