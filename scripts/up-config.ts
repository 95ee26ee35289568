import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_GRPC_PORTS, env, loadConfig, repoPath } from '@iot-mesh/runtime';

/** An optional comma-separated list of URLs with one of the schemes. */
function optionalUrls(schemes: string[]) {
  const valid = (part: string) => {
    try {
      return schemes.includes(new URL(part.trim()).protocol.replace(/:$/, ''));
    } catch {
      return false;
    }
  };
  return z
    .string()
    .optional()
    .refine((value) => value === undefined || value.split(',').every(valid), `must be comma-separated URLs starting with ${schemes.map((s) => `${s}://`).join(' or ')}`);
}

/**
 * Variables of the up-command itself. Every port and URL can be overridden;
 * DATABASE_URL, REDIS_URL and NATS_URL point at running servers instead of
 * starting local ones. The README's configuration table lists them.
 */
export const upEnv = {
  /** Where local servers keep their data, logs, pid files and secrets. */
  UP_DATA_DIR: env.string({ fallback: repoPath('.data') }),
  UP_HOST: env.string({ fallback: '127.0.0.1' }),
  UP_NATS_PORT: env.port(4223),
  UP_NATS_MQTT_PORT: env.port(1884),
  UP_NATS_HTTP_PORT: env.port(8223),
  /**
   * Clustered mode (also `npm run up -- --cluster`): three NATS nodes (node i
   * on each UP_NATS_*_PORT + i), streams with three replicas, two replicas of
   * every service. README "Clustered mode".
   */
  UP_CLUSTER: env.bool(false),
  /** First NATS node's route port in clustered mode (the others: +1, +2). */
  UP_NATS_CLUSTER_PORT: env.port(6223),
  /** `operator`: decentralised JWT auth (keys from `npm run setup:nats` under <data>/nats/auth); `none`: an open server. */
  UP_NATS_AUTH: env.oneOf(['operator', 'none'] as const, 'operator'),
  UP_POSTGRES_PORT: env.port(5433),
  UP_REDIS_PORT: env.port(6380),
  /** Directory with initdb and postgres; default: the newest /usr/lib/postgresql/<v>/bin. */
  UP_POSTGRES_BIN: env.optional(),
  /** How long each piece may take to become ready. */
  UP_START_TIMEOUT_MS: env.positiveInt(60_000),
  /** How long each piece may take to stop before it is killed. */
  UP_STOP_TIMEOUT_MS: env.positiveInt(15_000),
  /**
   * The services' ports (and GATEWAY_PORT, read by the gateway entry). 0: a
   * free port the process binds itself and logs (at LOG_LEVEL info or lower),
   * read back for the status table and for the processes started after it.
   */
  SIGNING_GRPC_PORT: env.port(DEFAULT_GRPC_PORTS.signing),
  /** signing's HTTP port (JWKS at /.well-known/jwks.json). */
  SIGNING_HTTP_PORT: env.port(8081),
  DEVICE_GRPC_PORT: env.port(DEFAULT_GRPC_PORTS.device),
  MONITORING_GRPC_PORT: env.port(DEFAULT_GRPC_PORTS.monitoring),
  /** Prometheus `/metrics` of each service (METRICS_PORT of that process). */
  SIGNING_METRICS_PORT: env.port(9464),
  DEVICE_METRICS_PORT: env.port(9465),
  MONITORING_METRICS_PORT: env.port(9466),
  /** Use running servers instead of local ones. */
  DATABASE_URL: env.url(['postgres', 'postgresql']).optional(),
  REDIS_URL: env.url(['redis', 'rediss']).optional(),
  NATS_URL: optionalUrls(['nats', 'tls']),
  /** Shown in the status table when NATS_URL points elsewhere. */
  MQTT_URL: env.optional(),
  /** The bootstrap secret handed to signing; generated and kept under the data folder when unset. */
  SIGNING_BOOTSTRAP_TOKEN: env.optional(),
  /** Encrypts signing keys at rest; generated and kept under the data folder when unset. */
  SIGNING_KEY_ENCRYPTION_KEY: env.optional(),
};

/** The up-command's validated configuration plus derived paths. */
export type UpConfig = ReturnType<typeof loadUpConfig>;

/** Reads and validates the up-command's variables; throws ConfigError naming each bad one. */
export function loadUpConfig(environment: NodeJS.ProcessEnv = process.env) {
  const raw = loadConfig(upEnv, environment);
  const dataDir = path.resolve(raw.UP_DATA_DIR);
  return {
    ...raw,
    dataDir,
    logsDir: path.join(dataDir, 'logs'),
    runDir: path.join(dataDir, 'run'),
    secretsDir: path.join(dataDir, 'secrets'),
  };
}
