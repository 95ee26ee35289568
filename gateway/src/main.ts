/**
 * The Node gateway process: gRPC-Web and REST for browsers and scripts, and
 * the dashboard's files, in front of the services. Configuration:
 *
 * | variable | default | meaning |
 * |---|---|---|
 * | GATEWAY_HOST | 127.0.0.1 | address to listen on |
 * | GATEWAY_PORT | 8080 | port to listen on |
 * | `<SERVICE>_HOST` / `<SERVICE>_PORT` | 127.0.0.1 / the service's entry in `DEFAULT_GRPC_PORTS` (@iot-mesh/runtime) | where each service of the route table (SIGNING, DEVICE, MONITORING) answers gRPC |
 * | GATEWAY_CORS_ORIGINS | unset: same origin only | comma-separated origins allowed to call from browsers besides the gateway's own (`*` allows any); CORS_ALLOWED_ORIGINS is the former name |
 * | GATEWAY_STATIC_DIR | gateway/web/dist | built dashboard |
 * | LOG_LEVEL | info | pino level |
 * | METRICS_PORT / METRICS_HOST | unset / 127.0.0.1 | Prometheus `/metrics` on a port of its own too (`0` = any free port); the gateway's port always serves `/metrics` |
 *
 * It also serves `/openapi.json` (the REST API, generated from the descriptor set) and the reference page at `/docs/`.
 */
import { loadConfig } from '@iot-mesh/runtime';
import { createLogger } from '@iot-mesh/runtime';
import { metricsEnv, startMetricsServer } from '@iot-mesh/runtime';
import { repoPath } from '@iot-mesh/runtime';
import { corsOriginsFromEnv } from './edge-policy';
import { startGateway } from './gateway';
import { buildRouteTable } from './route-table';
import { upstreamAddressesFromEnv } from './upstreams';

/** Default folder of the built dashboard. */
export const DEFAULT_STATIC_DIR = repoPath('gateway', 'web', 'dist');

async function main(): Promise<void> {
  const env = process.env;
  const log = createLogger('gateway', (env.LOG_LEVEL as never) ?? 'info');
  const port = Number(env.GATEWAY_PORT ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid configuration:\n  GATEWAY_PORT: must be a port number (got ${JSON.stringify(env.GATEWAY_PORT)})`);
  const table = buildRouteTable();
  const upstreams = upstreamAddressesFromEnv(table.clusters, env);
  const gateway = await startGateway({
    table,
    upstreams,
    host: env.GATEWAY_HOST || '127.0.0.1',
    port,
    corsOrigins: corsOriginsFromEnv(env),
    staticDir: env.GATEWAY_STATIC_DIR || DEFAULT_STATIC_DIR,
    onError: (err) => log.error({ err }, 'gateway request failed'),
    onClientClosed: (info) => log.debug(info, 'client closed the response'),
  });
  log.info({ port: gateway.port, upstreams, rpcs: table.methods.length }, 'gateway listening');
  const metricsConfig = loadConfig(metricsEnv, env);
  const metrics = metricsConfig.METRICS_PORT === undefined ? undefined : await startMetricsServer(metricsConfig.METRICS_HOST, metricsConfig.METRICS_PORT);
  if (metrics) log.info({ port: metrics.port }, 'metrics at /metrics');
  const stop = (signal: string) => {
    log.info({ signal }, 'stopping');
    Promise.all([gateway.close(), metrics?.close()]).then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
