import { setTimeout as sleep } from 'node:timers/promises';
import { baseEnv, ConfigError, ConfigOf, env, EnvShape, loadConfig } from './config';
import { DependencyCheck } from './health';
import { createLogger, Logger, redactUrl } from './logger';
import { connectNats, NatsConnection, pingNats } from './nats';
import { createPool, migrate, Pool } from './postgres';
import { createRedis, Redis } from './redis';
import { Middleware, ServiceRegistration } from './rpc';
import { GrpcServer } from './server';
import { metricsEnv, MetricsServer, startMetricsServer } from './observability/metrics-server';
import { observePgPool } from './observability/pg-pool-metrics';
import { flushTelemetry } from './observability/telemetry-flush';
import { createLimitsMiddleware, limitsEnv } from './limits';

/** Variables for the dependencies a service declares it uses. */
const postgresEnv = { DATABASE_URL: env.url(['postgres', 'postgresql'], 'postgres://postgres@127.0.0.1:5432/postgres') };
const redisEnv = { REDIS_URL: env.url(['redis', 'rediss'], 'redis://127.0.0.1:6379') };
const natsEnv = { NATS_URL: env.urlList(['nats', 'tls'], 'nats://127.0.0.1:4222'), NATS_CREDS: env.optional() };

/** What a service's build step gets: its configuration and connected dependencies. */
export interface ServiceContext<S extends EnvShape> {
  config: ConfigOf<S> & ConfigOf<typeof baseEnv>;
  log: Logger;
  /** Present when the service declared `uses.postgres`. */
  pool: Pool;
  /** Present when the service declared `uses.redis`. */
  redis: Redis;
  /** Present when the service declared `uses.nats`. */
  nats: NatsConnection;
}

/** What a service's build step returns. */
export interface BuiltService {
  services: ServiceRegistration[];
  /** Run after the runtime's own (error mapping), in order: auth, validation… */
  middlewares?: Middleware[];
  /** Further readiness checks beyond the declared dependencies. */
  checks?: DependencyCheck[];
  /** Stops the service's own background work; runs before connections close. */
  stop?: () => Promise<void>;
}

/** Everything that differs between services; the rest is this module's job. */
export interface ServiceSpec<S extends EnvShape> {
  /** Short name: `signing`, `device`, `monitoring`. Also the PostgreSQL schema. */
  name: string;
  /** The service's own variables (besides GRPC_PORT and the dependencies'). */
  env: S;
  defaultPort: number;
  uses: { postgres?: { migrations: string }; redis?: boolean; nats?: boolean };
  build(ctx: ServiceContext<S>): Promise<BuiltService>;
}

/** A started service. */
export interface RunningService<S extends EnvShape> {
  readonly port: number;
  readonly server: GrpcServer;
  /** Port of the Prometheus `/metrics` endpoint; undefined when METRICS_PORT is unset. */
  readonly metricsPort: number | undefined;
  /** Resolves once dependencies are connected, migrations applied and services added. */
  readonly ready: Promise<ServiceContext<S>>;
  /** Graceful stop: NOT_SERVING, drain calls, stop background work, drain NATS, close pools. */
  stop(): Promise<void>;
}

/**
 * Starts a service: validates configuration (throws {@link ConfigError}),
 * binds the gRPC port at once with health NOT_SERVING and then, in the
 * background, connects dependencies (retrying until they answer), applies
 * migrations, adds the business services and goes SERVING.
 */
export async function startService<S extends EnvShape>(spec: ServiceSpec<S>, environment: NodeJS.ProcessEnv = process.env): Promise<RunningService<S>> {
  const shape = {
    ...baseEnv,
    GRPC_PORT: env.port(spec.defaultPort),
    ...metricsEnv,
    ...limitsEnv,
    ...(spec.uses.postgres ? postgresEnv : {}),
    ...(spec.uses.redis ? redisEnv : {}),
    ...(spec.uses.nats ? natsEnv : {}),
    ...spec.env,
  };
  const config = loadConfig(shape, environment) as Record<string, any>;
  const log = createLogger(spec.name, config.LOG_LEVEL);
  const server = new GrpcServer(log, config.HEALTH_INTERVAL_MS);
  const port = await server.listen(config.GRPC_HOST, config.GRPC_PORT);
  log.info({ port }, 'grpc listening (NOT_SERVING until ready)');
  let metricsServer: MetricsServer | undefined;
  if (config.METRICS_PORT !== undefined) {
    metricsServer = await startMetricsServer(config.METRICS_HOST, config.METRICS_PORT).catch(async (err: Error) => {
      await server.shutdown(0);
      throw err;
    });
    log.info({ port: metricsServer.port }, 'metrics at /metrics');
  }

  let stopping = false;
  let pool: Pool | undefined;
  let redis: Redis | undefined;
  let nats: NatsConnection | undefined;
  let built: BuiltService | undefined;

  /** Retries `attempt` with back-off until it succeeds or the service stops. */
  async function untilConnected<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    for (let delay = 200; ; delay = Math.min(delay * 2, 2000)) {
      if (stopping) throw new Error('stopped during start-up');
      try {
        return await attempt();
      } catch (err) {
        log.warn({ dependency: what, err: (err as Error).message, retryInMs: delay }, 'waiting for dependency');
        await sleep(delay);
      }
    }
  }

  const ready = (async (): Promise<ServiceContext<S>> => {
    if (spec.uses.postgres) {
      const db = createPool(config.DATABASE_URL, spec.name, log);
      pool = db;
      observePgPool(spec.name, db);
      log.info({ db: redactUrl(config.DATABASE_URL) }, 'connecting to postgres');
      await untilConnected('postgres', () => migrate(db, spec.name, spec.uses.postgres!.migrations, log));
      server.health.addCheck({ name: 'postgres', required: true, check: async () => void (await db.query('SELECT 1')) });
    }
    if (spec.uses.redis) {
      const client = createRedis(config.REDIS_URL, log);
      redis = client;
      await untilConnected('redis', async () => {
        if (client.status === 'wait' || client.status === 'end') await client.connect();
        await client.ping();
      });
      // Optional in every service: Redis only caches (device records, auth
      // keys) or counts failed logins, and each use falls back when it is
      // down (signing then skips login throttling, logged), so the service
      // degrades instead of leaving readiness.
      server.health.addCheck({ name: 'redis', required: false, check: async () => void (await client.ping()) });
    }
    if (spec.uses.nats) {
      nats = await connectNats(config.NATS_URL, `iot-${spec.name}`, log, { credsFile: config.NATS_CREDS });
      const nc = nats;
      server.health.addCheck({ name: 'nats', required: true, check: () => pingNats(nc) });
    }
    const ctx = { config, log, pool, redis, nats } as ServiceContext<S>;
    if (stopping) throw new Error('stopped during start-up');
    built = await spec.build(ctx);
    for (const check of built.checks ?? []) server.health.addCheck(check);
    // The limits read the principal, so they run after the service's own middlewares (auth).
    server.addServices(built.services, [...(built.middlewares ?? []), createLimitsMiddleware({ settings: config as ConfigOf<typeof limitsEnv>, redis, log })]);
    await server.health.markReady();
    log.info({ port, status: server.health.status }, 'ready');
    return ctx;
  })();
  // Start-up failures other than a stop are reported by whoever awaits `ready`.
  ready.catch(() => undefined);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      stopping = true;
      server.health.stop();
      await server.shutdown(config.SHUTDOWN_GRACE_MS);
      await built?.stop?.().catch((err: Error) => log.warn({ err: err.message }, 'stopping background work failed'));
      if (nats && !nats.isClosed()) await nats.drain().catch(() => undefined);
      await pool?.end().catch(() => undefined);
      redis?.disconnect();
      await metricsServer?.close();
      await flushTelemetry();
      log.info('stopped');
    })());

  return { port, server, metricsPort: metricsServer?.port, ready, stop };
}

/**
 * The whole life of a service process: start, exit non-zero naming the bad
 * variable on a configuration error, stop gracefully on SIGTERM or SIGINT and
 * exit 0 (a second signal exits at once).
 */
export function runService<S extends EnvShape>(spec: ServiceSpec<S>): void {
  startService(spec).then(
    (running) => {
      running.ready.catch((err: Error) => {
        if (!/stopped during start-up/.test(err.message)) {
          console.error(`${spec.name}: start-up failed: ${err.message}`);
          process.exit(1);
        }
      });
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        if (++signals > 1) process.exit(1);
        console.error(`${spec.name}: ${signal} received, shutting down`);
        running.stop().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    },
    (err: Error) => {
      console.error(err instanceof ConfigError ? `${spec.name}: ${err.message}` : `${spec.name}: failed to start: ${err.message}`);
      process.exit(err instanceof ConfigError ? 2 : 1);
    },
  );
}
