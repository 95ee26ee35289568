/**
 * `npm run up`: the whole platform on one machine. Starts what is missing
 * (nats-server with JetStream and MQTT, PostgreSQL, Redis — under the data
 * folder, `.data/` by default), the services (which migrate on start), and
 * prints a status table; Ctrl-C or SIGTERM stops everything in reverse order.
 * Every port and URL comes from the environment (scripts/up-config.ts).
 * A server program missing from the machine is installed first, or named with
 * the command that installs it (scripts/preflight.ts).
 */
import { ConfigError } from '@iot-mesh/runtime';
import { loadUpConfig, UpConfig } from './up-config';
import { deviceServiceEnvBeside, natsOperatorAuth } from './nats-setup';
import { preflightOrExit, upNeeds } from './preflight';
import { natsServer, postgresServer, redisServer } from './up-servers';
import { dashboardAndGateway } from './up-gateway';
import { simulatedFleet } from './up-fleet';
import { adminBootstrap, bootstrapToken, grpcService, keyEncryptionKey } from './up-services';
import { Component, runStack, together, UpContext } from './up-stack';
import { clusterServiceEnv, natsClusterServer } from './up-cluster';

/**
 * Everything the up-command runs, in start order (stopped in reverse). Each
 * entry sees the variables and addresses of the ones before it (`ctx.env`,
 * `ctx.addresses`). To add a piece — the gateway and dashboard, a simulated
 * fleet — add one entry here; helpers for processes and health waits are in
 * scripts/up-services.ts and scripts/up-stack.ts.
 */
export function components(config: UpConfig): Component[] {
  // The dashboard builds (when it has no build yet) while the rest starts; the gateway comes last.
  const edge = dashboardAndGateway();
  const auth = config.UP_NATS_AUTH === 'operator' ? natsOperatorAuth : undefined;
  // Clustered mode: a second replica of each service, given the NATS nodes in another order.
  const replicas = config.UP_CLUSTER ? [0, 1] : [0];
  const clusterEnv = (ctx: UpContext, replica: number) => (config.UP_CLUSTER ? clusterServiceEnv(ctx, replica) : {});
  const signing = (replica: number) =>
    grpcService({
      name: 'signing',
      entry: 'services/signing/src/main',
      replica,
      extraPorts: (c) => [{ port: c.SIGNING_HTTP_PORT, variable: 'SIGNING_HTTP_PORT', report: 'http listening' }],
      extraRows: (_c, ports) => [{ name: 'signing jwks', address: `http://127.0.0.1:${ports.SIGNING_HTTP_PORT}/.well-known/jwks.json`, port: ports.SIGNING_HTTP_PORT }],
      env: (ctx) => ({
        ...clusterEnv(ctx, replica),
        SIGNING_BOOTSTRAP_TOKEN: bootstrapToken(config),
        SIGNING_KEY_ENCRYPTION_KEY: keyEncryptionKey(config),
        SIGNING_HTTP_PORT: String(replica ? 0 : config.SIGNING_HTTP_PORT),
      }),
    });
  const device = (replica: number) =>
    grpcService({
      name: 'device',
      entry: 'services/device/src/main',
      replica,
      // Written into device credentials: where devices reach this stack's NATS and MQTT.
      env: (ctx) => ({
        ...clusterEnv(ctx, replica),
        ...deviceServiceEnvBeside(ctx.env.NATS_CREDS),
        // UP_NATS_AUTH=none runs NATS open on purpose: say so, or the device service refuses to start.
        ...(config.UP_NATS_AUTH === 'none' ? { DEVICE_ALLOW_INSECURE_NATS: 'true' } : {}),
        DEVICE_NATS_PUBLIC_URL: ctx.env.NATS_URL.split(',')[0],
        ...(ctx.env.MQTT_URL ? { DEVICE_MQTT_PUBLIC_URL: ctx.env.MQTT_URL } : {}),
        // Stored firmware images are downloaded through this stack's gateway.
        ...(process.env.GATEWAY_PORT ? { DEVICE_FIRMWARE_DOWNLOAD_URL: `http://127.0.0.1:${process.env.GATEWAY_PORT}` } : {}),
      }),
    });
  const monitoring = (replica: number) => grpcService({ name: 'monitoring', entry: 'services/monitoring/src/main', replica, env: (ctx) => clusterEnv(ctx, replica) });
  return [
    edge.build,
    together('nats + postgres + redis', [config.UP_CLUSTER ? natsClusterServer(auth) : natsServer(auth), postgresServer(), redisServer()]),
    ...replicas.slice(0, 1).map(signing),
    adminBootstrap(),
    ...replicas.slice(1).map(signing),
    // Neither needs the other to start: side by side.
    ...replicas.map((r) => together(r ? `device-${r + 1} + monitoring-${r + 1}` : 'device + monitoring', [device(r), monitoring(r)])),
    edge.gateway,
    simulatedFleet(),
  ];
}

async function main(): Promise<void> {
  let config: UpConfig;
  if (process.argv.includes('--cluster')) process.env.UP_CLUSTER = 'true';
  try {
    config = loadUpConfig();
  } catch (err) {
    console.error(err instanceof ConfigError ? `up: ${err.message}` : err);
    process.exit(2);
  }
  preflightOrExit(upNeeds(config), { who: 'npm run up' });
  process.exit(await runStack(components(config), config));
}

if (require.main === module) void main();
