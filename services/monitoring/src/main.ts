import { createAuthMiddleware, repoPath, runService, ServiceSpec } from '@iot-mesh/runtime';
import { alertService } from './api/alerts';
import { notificationChannelService, RuleHandlerDeps, ruleService } from './api/rules';
import { deadLetterService } from './api/dead-letters';
import { exportService } from './api/export';
import { retentionService } from './api/retention';
import { encodeLiveFragment, telemetryService } from './api/telemetry';
import { deadLetterOptions, deadLetterStreamOptions, ingestLimits, monitoringEnv, retentionPolicy, telemetryStreamOptions, writerConsumerOptions, writerOptions } from './config';
import { AlertChanges, AlertEvaluator } from './domain/alert-evaluation';
import { DeviceTypeAlertRules } from './domain/device-type-alert-rules';
import { AlertRules } from './domain/alerts';
import { DeadLetters } from './domain/dead-letters';
import { TelemetryExport } from './domain/export';
import { LiveHub } from './domain/live';
import { Rules } from './domain/rules';
import { NotificationChannels } from './domain/rules-channels';
import { TelemetryRetention } from './domain/retention';
import { TelemetryQueries } from './domain/telemetry';
import { publishAlertEvent, publishRulesChanged, subscribeRulesChanged } from './events/alert-events';
import { AlertNotifier } from './events/alert-notifications';
import { DeviceDirectoryView } from './events/device-directory-view';
import { RuleActions } from './events/rule-actions';
import { ruleActionOptions, rulesConsumerOptions, rulesEnv } from './events/rule-actions-config';
import { RuleCounters } from './events/rule-actions-stats';
import { ensureRulesConsumer, RulesConsumer } from './events/rules-consumer';
import { TelemetryDecoder } from './events/telemetry-decoder';
import { TelemetryFanout } from './events/telemetry-fanout';
import { StreamDeadLetterArchive } from './events/dead-letter-archive';
import { DeadLetterWriter } from './events/dead-letters';
import { ensureDeadLetterStream, ensureTelemetryStream, ensureWriterConsumer } from './events/telemetry-stream';
import { TelemetryWriter } from './events/telemetry-writer';
import { exportMonitoringMetrics, IngestStats, LiveStats } from './metrics';
import { PostgresActionQueue } from './store/action-queue-store';
import { PostgresAlertStore } from './store/alert-store';
import { PostgresPointStream } from './store/export-queries';
import { openMongoStore } from './store/mongo-connect';
import { PostgresRetentionStore } from './store/retention-store';
import { PostgresRuleStore } from './store/rule-store';
import { PostgresTelemetryStore } from './store/postgres-store';
import type { TelemetryStore } from './store/telemetry-store';

const HOUR_MS = 3_600_000;

/** Counters of the running monitoring process, readable by tests and the metrics layer. */
export interface MonitoringStats {
  ingest: IngestStats;
  live: LiveStats;
  /** Resolves once every sample received so far has been evaluated against the alert rules. */
  alertsIdle(): Promise<void>;
  /** Resolves once the rules consumer has evaluated the stream so far and every queued rule action finished. */
  rulesIdle(): Promise<void>;
  /** Sends the alert notification repeats due at `now` (the same as the periodic check); how many alerts were due. */
  alertRepeats(now?: Date): Promise<number>;
  /** Runs one retention round as if the clock read `now` (the hourly job does the same). */
  retention(now?: number): Promise<void>;
}

/** Hooks for tests and embedding: see what a started instance counts. */
export interface MonitoringHooks {
  onStats?: (stats: MonitoringStats) => void;
}

/** A monitoring service spec; `monitoringService` is the one `main` runs. */
export function createMonitoringService(hooks: MonitoringHooks = {}): ServiceSpec<typeof monitoringEnv & typeof rulesEnv> {
  return {
    name: 'monitoring',
    env: { ...monitoringEnv, ...rulesEnv },
    defaultPort: 50053,
    uses: { postgres: { migrations: repoPath('services', 'monitoring', 'migrations') }, redis: true, nats: true },
    async build({ config, log, pool, nats, redis }) {
      const ingest = new IngestStats();
      const liveStats = new LiveStats();
      const mongo = config.TELEMETRY_STORE === 'mongodb' ? await openMongoStore(config.MONGODB_URL) : undefined;
      const store: TelemetryStore = mongo?.store ?? new PostgresTelemetryStore(pool);

      const directory = await DeviceDirectoryView.open(nats, log.child({ component: 'device-directory' }));
      const retention = new TelemetryRetention({
        store,
        policies: mongo ? undefined : new PostgresRetentionStore(pool),
        devices: directory,
        policy: retentionPolicy(config),
        deliveries: { prune: (before) => new PostgresRuleStore(pool).pruneDeliveries(before), days: config.RULES_DELIVERY_RETENTION_DAYS },
        log: log.child({ component: 'retention' }),
      });
      await retention.run();
      const maintenance = setInterval(() => retention.run().catch((err: Error) => log.warn({ err: err.message }, 'partition maintenance failed')), HOUR_MS);
      maintenance.unref();

      const decoder = new TelemetryDecoder(ingestLimits(config), directory, (tenantId, deviceId, limit) =>
        store.latest(tenantId, [deviceId], [], limit).then((points) => points.map((p) => p.metric)),
      );
      const jsm = await nats.jetstreamManager();
      const ensureStream = async () => {
        await ensureTelemetryStream(jsm, telemetryStreamOptions(config));
        await ensureDeadLetterStream(jsm, deadLetterStreamOptions(config));
      };
      await ensureStream();
      const deadLetters = new DeadLetterWriter(nats, nats.jetstream(), ingest, deadLetterOptions(config));

      let writer: TelemetryWriter | undefined;
      if (config.WRITER_ENABLED) {
        const ensureConsumer = async () => {
          await ensureStream();
          await ensureWriterConsumer(jsm, writerConsumerOptions(config));
        };
        await ensureConsumer();
        writer = new TelemetryWriter({ nc: nats, store, decoder, stats: ingest, deadLetters, log: log.child({ component: 'writer' }), ensureConsumer, options: writerOptions(config) });
        await writer.start();
      }

      // Rules: their own durable consumer and bounded, durable action queues, off the writer's and live's path.
      const ruleStore = new PostgresRuleStore(pool);
      const ruleCounters = new RuleCounters(ruleStore, log.child({ component: 'rules' }));
      ruleCounters.start(config.RULES_STATS_FLUSH_MS);
      const ruleActions = new RuleActions({ nc: nats, store: ruleStore, queue: new PostgresActionQueue(pool), counters: ruleCounters, log: log.child({ component: 'rule-actions' }), options: ruleActionOptions(config) });
      await ruleActions.start();

      const alertStore = new PostgresAlertStore(pool);
      const notifier = new AlertNotifier({ store: alertStore, actions: ruleActions, log: log.child({ component: 'alert-notifications' }) });
      notifier.start(config.ALERT_CHECK_INTERVAL_MS);
      const changes: AlertChanges = (kind, alert) => {
        publishAlertEvent(nats, kind, alert);
        notifier.announce(kind, alert);
      };
      const evaluator = new AlertEvaluator(alertStore, directory, changes, config.ALERT_CHECK_INTERVAL_MS, log.child({ component: 'alerts' }));
      await evaluator.start();
      const rulesChangedElsewhere = subscribeRulesChanged(nats, (tenantId) => evaluator.rulesChanged(tenantId));
      const alertRulesChanged = async (tenantId: string) => {
        // This replica at once (the caller sees its change applied), the others through NATS.
        await evaluator.reload(tenantId);
        publishRulesChanged(nats, tenantId);
      };
      const rules = new AlertRules({ store: alertStore, groups: directory, changes, rulesChanged: alertRulesChanged });

      // Device types' default alert rules, kept as rules owned by the type from what the device directory shows.
      const typeRules = new DeviceTypeAlertRules({ store: alertStore, rulesChanged: alertRulesChanged, log: log.child({ component: 'alerts' }) });
      directory.onDefaultAlertRules((tenantId, deviceTypeId, defaults) => typeRules.seen(tenantId, deviceTypeId, defaults));
      await typeRules
        .dropOrphans((tenantId, deviceTypeId) => directory.hasDevicesOfType(tenantId, deviceTypeId))
        .catch((err: Error) => log.warn({ err: err.message }, 'looking for the alert rules of device types without devices failed; the next start looks again'));

      let rulesConsumer: RulesConsumer | undefined;
      if (config.RULES_ENABLED) {
        await ensureRulesConsumer(jsm, rulesConsumerOptions(config));
        rulesConsumer = new RulesConsumer({ nc: nats, decoder, directory, store: ruleStore, actions: ruleActions, counters: ruleCounters, log: log.child({ component: 'rules' }), options: rulesConsumerOptions(config) });
        await rulesConsumer.start();
      }
      const ruleDeps: RuleHandlerDeps = {
        rules: new Rules({ store: ruleStore, groups: directory, rulesChanged: () => rulesConsumer?.reload() }),
        channels: new NotificationChannels(ruleStore),
        store: ruleStore,
        telemetry: store,
        devices: directory,
      };

      const live = new LiveHub(directory, config.LIVE_CLIENT_BUFFER, liveStats, encodeLiveFragment);
      const fanout = new TelemetryFanout(nats, decoder, [live, evaluator], log.child({ component: 'live' }));
      await fanout.start();

      const auth = config.SIGNING_ADDRESS ? createAuthMiddleware({ signingAddress: config.SIGNING_ADDRESS, redis, redisPrefix: config.AUTH_CACHE_PREFIX, log }) : undefined;
      if (!auth) log.warn('SIGNING_ADDRESS is not set: every RPC is refused as unauthenticated');
      const stopMetrics = exportMonitoringMetrics(ingest, liveStats, config.WRITER_ENABLED ? { jsm, stream: config.TELEMETRY_STREAM, durable: config.WRITER_CONSUMER } : undefined);
      hooks.onStats?.({
        ingest,
        live: liveStats,
        async alertsIdle() {
          await nats.flush();
          await typeRules.idle();
          await evaluator.idle();
          await notifier.idle();
        },
        async rulesIdle() {
          await rulesConsumer?.idle();
          await ruleActions.idle();
        },
        alertRepeats: (now) => notifier.sendRepeats(now),
        retention: (now) => retention.run(now),
      });

      return {
        services: [telemetryService({ queries: new TelemetryQueries(store, directory, config.HISTORY_MAX_SPAN_DAYS * 86_400_000), live }), alertService({ rules, nc: nats, deliveries: ruleStore }), ruleService(ruleDeps), notificationChannelService(ruleDeps), deadLetterService({ deadLetters: new DeadLetters(new StreamDeadLetterArchive(nats, jsm, nats.jetstream(), config.DEAD_LETTER_STREAM)) }),
          exportService({ exports: new TelemetryExport({ store, cursor: mongo ? undefined : new PostgresPointStream(pool), devices: directory }) }),
          retentionService({ retention }),
        ],
        middlewares: auth ? [auth] : [],
        async stop() {
          clearInterval(maintenance);
          stopMetrics();
          fanout.stop();
          notifier.stop();
          typeRules.stop();
          await rulesConsumer?.stop();
          await ruleActions.stop();
          await ruleCounters.stop();
          rulesChangedElsewhere.unsubscribe();
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
