import { createAuthMiddleware, repoPath, runService, ServiceSpec } from '@iot-mesh/runtime';
import { AlertStore } from './alerts/alert-store';
import { alertService } from './alerts/alerts-grpc';
import { AlertEvaluator } from './alerts/evaluator';
import { monitoringEnv } from './config';
import { IngestLimits } from './ingest/decode';
import { DeviceDirectory } from './ingest/device-directory';
import { IngestStats } from './ingest/stats';
import { ensureTelemetryStream, ensureWriterConsumer } from './ingest/stream';
import { TelemetryWriter } from './ingest/writer';
import { LiveHub, LiveStats } from './live/live-hub';
import { exportMonitoringMetrics } from './metrics';
import { openMongoStore } from './store/mongo-connect';
import { applyRetention, parseTenantRetention } from './retention';
import { PostgresTelemetryStore } from './store/postgres-store';
import type { TelemetryStore } from './store/telemetry-store';
import { telemetryService } from './telemetry-grpc';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** Counters of the running monitoring process, readable by tests and the metrics layer. */
export interface MonitoringStats {
  ingest: IngestStats;
  live: LiveStats;
  /** Resolves once every sample received so far has been evaluated against the alert rules. */
  alertsIdle(): Promise<void>;
}

/** Hooks for tests and embedding: see what a started instance counts. */
export interface MonitoringHooks {
  onStats?: (stats: MonitoringStats) => void;
}

/** A monitoring service spec; `monitoringService` is the one `main` runs. */
export function createMonitoringService(hooks: MonitoringHooks = {}): ServiceSpec<typeof monitoringEnv> {
  return {
    name: 'monitoring',
    env: monitoringEnv,
    defaultPort: 50053,
    uses: { postgres: { migrations: repoPath('services', 'monitoring', 'migrations') }, redis: true, nats: true },
    async build({ config, log, pool, nats, redis }) {
      const limits: IngestLimits = {
        maxPayloadBytes: config.INGEST_MAX_PAYLOAD_BYTES,
        maxPoints: config.INGEST_MAX_POINTS,
        maxFutureMs: config.INGEST_MAX_FUTURE_MS,
        maxPastMs: config.INGEST_MAX_PAST_MS,
      };
      let evaluatorRef: AlertEvaluator | undefined;
      const stats: MonitoringStats = { ingest: new IngestStats(), live: new LiveStats(), alertsIdle: async () => evaluatorRef?.idle() };
      const pgStore = config.TELEMETRY_STORE === 'postgres' ? new PostgresTelemetryStore(pool) : undefined;
      const mongo = config.TELEMETRY_STORE === 'mongodb' ? await openMongoStore(config.MONGODB_URL) : undefined;
      const store: TelemetryStore = pgStore ?? mongo!.store;

      const tenantRetention = parseTenantRetention(config.TELEMETRY_TENANT_RETENTION_DAYS) as Map<string, number>;
      const maintainPartitions = async () => {
        const now = Date.now();
        await pgStore?.ensurePartitions(new Date(now - DAY_MS), new Date(now + config.TELEMETRY_PARTITIONS_AHEAD_DAYS * DAY_MS));
        await applyRetention(store, now, config.TELEMETRY_RETENTION_DAYS, tenantRetention, log);
      };
      await maintainPartitions();
      const maintenance = setInterval(() => maintainPartitions().catch((err: Error) => log.warn({ err: err.message }, 'partition maintenance failed')), HOUR_MS);
      maintenance.unref();

      const directory = await DeviceDirectory.open(nats, log.child({ component: 'device-directory' }));
      const jsm = await nats.jetstreamManager();
      const ensureStream = () =>
        ensureTelemetryStream(jsm, {
          name: config.TELEMETRY_STREAM,
          maxBytes: config.TELEMETRY_STREAM_MAX_BYTES,
          maxAgeMs: config.TELEMETRY_STREAM_MAX_AGE_MS,
          duplicateWindowMs: config.TELEMETRY_DUPLICATE_WINDOW_MS,
          replicas: config.TELEMETRY_STREAM_REPLICAS,
        });
      await ensureStream();

      let writer: TelemetryWriter | undefined;
      if (config.WRITER_ENABLED) {
        const ensureConsumer = async () => {
          await ensureStream();
          await ensureWriterConsumer(jsm, {
            stream: config.TELEMETRY_STREAM,
            durable: config.WRITER_CONSUMER,
            ackWaitMs: config.WRITER_ACK_WAIT_MS,
            maxAckPending: config.WRITER_MAX_ACK_PENDING,
          });
        };
        await ensureConsumer();
        writer = new TelemetryWriter({
          nc: nats,
          store,
          devices: directory,
          limits,
          stats: stats.ingest,
          log: log.child({ component: 'writer' }),
          ensureConsumer,
          options: {
            stream: config.TELEMETRY_STREAM,
            durable: config.WRITER_CONSUMER,
            batchMax: config.WRITER_BATCH_MAX,
            batchWaitMs: config.WRITER_BATCH_WAIT_MS,
            ackWaitMs: config.WRITER_ACK_WAIT_MS,
            maxBackoffMs: config.WRITER_MAX_BACKOFF_MS,
          },
        });
        await writer.start();
      }

      const live = new LiveHub(nats, directory, limits, config.LIVE_CLIENT_BUFFER, stats.live, log.child({ component: 'live' }));
      const alerts = new AlertStore(pool);
      const evaluator = new AlertEvaluator(nats, alerts, directory, limits, config.ALERT_CHECK_INTERVAL_MS, log.child({ component: 'alerts' }));
      await evaluator.start();
      evaluatorRef = evaluator;
      const auth = config.SIGNING_ADDRESS ? createAuthMiddleware({ signingAddress: config.SIGNING_ADDRESS, redis, redisPrefix: config.AUTH_CACHE_PREFIX, log }) : undefined;
      if (!auth) log.warn('SIGNING_ADDRESS is not set: every RPC is refused as unauthenticated');
      const stopMetrics = exportMonitoringMetrics(
        stats.ingest,
        stats.live,
        config.WRITER_ENABLED ? { jsm, stream: config.TELEMETRY_STREAM, durable: config.WRITER_CONSUMER } : undefined,
      );
      hooks.onStats?.(stats);

      return {
        services: [
          telemetryService({ store, live, frameMs: config.LIVE_FRAME_MS }),
          alertService({ store: alerts, nc: nats, reload: (tenantId) => evaluator.reload(tenantId) }),
        ],
        middlewares: auth ? [auth] : [],
        async stop() {
          clearInterval(maintenance);
          stopMetrics();
          live.stop();
          evaluator.stop();
          await writer?.stop();
          directory.stop();
          auth?.close();
          await mongo?.close();
        },
      };
    },
  };
}

/** The monitoring service: telemetry ingest, storage, history, live streams, alerts. */
export const monitoringService = createMonitoringService();

if (require.main === module) runService(monitoringService);
