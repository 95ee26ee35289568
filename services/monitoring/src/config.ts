import { z } from 'zod';
import { ConfigOf, env, isSubjectToken } from '@iot-mesh/runtime';
import type { RetentionPolicy } from './domain/retention';
import type { IngestLimits } from './events/telemetry-decoder';
import type { DeadLetterOptions } from './events/dead-letters';
import type { DeadLetterStreamOptions, TelemetryStreamOptions, WriterConsumerOptions } from './events/telemetry-stream';
import type { WriterOptions } from './events/telemetry-writer';

const DAY_MS = 86_400_000;

/**
 * Parses `TELEMETRY_TENANT_RETENTION_DAYS`: `tenantA=7,tenantB=14`. Returns
 * the problem as a string when the value is not of that form.
 */
export function parseTenantRetention(value: string | undefined): Map<string, number> | string {
  const out = new Map<string, number>();
  if (!value) return out;
  for (const part of value.split(',')) {
    const m = /^\s*([^=\s]+)\s*=\s*(\d+)\s*$/.exec(part);
    if (!m || !isSubjectToken(m[1]) || Number(m[2]) < 1) return `"${part.trim()}" is not <tenant>=<days> with days ≥ 1`;
    out.set(m[1], Number(m[2]));
  }
  return out;
}

/** The monitoring service's own environment variables (documented in the README's Telemetry section). */
export const monitoringEnv = {
  /** Address of the signing service (JWKS, API keys); unset means every call is refused as unauthenticated. */
  SIGNING_ADDRESS: env.optional(),
  /**
   * Prefix of the auth middleware's shared Redis caches (JWKS, API keys); one
   * per signing deployment. Unset: the middleware's own, which names the
   * signing address, so deployments sharing a Redis never read each other's keys.
   */
  AUTH_CACHE_PREFIX: env.optional(),
  /** Where samples are stored: `postgres` (default) or `mongodb` (alert rules and alerts stay in PostgreSQL). */
  TELEMETRY_STORE: env.oneOf(['postgres', 'mongodb'] as const, 'postgres'),
  /** MongoDB connection string (database taken from the path, default `iot`) when TELEMETRY_STORE=mongodb. */
  MONGODB_URL: z
    .string()
    .regex(/^mongodb(\+srv)?:\/\/[^/\s]+(\/[^\s]*)?$/, 'must be a URL starting with mongodb:// or mongodb+srv://')
    .default('mongodb://127.0.0.1:27017/iot'),
  TELEMETRY_STREAM: env.string({ fallback: 'TELEMETRY' }),
  TELEMETRY_STREAM_MAX_BYTES: env.positiveInt(8 * 1024 ** 3),
  TELEMETRY_STREAM_MAX_AGE_MS: env.positiveInt(7 * DAY_MS),
  TELEMETRY_DUPLICATE_WINDOW_MS: env.positiveInt(2 * 60_000),
  TELEMETRY_STREAM_REPLICAS: env.positiveInt(1),
  /** Largest message the telemetry stream stores: the server's max_payload (MQTT publishes can exceed it; the stream refuses them). */
  TELEMETRY_STREAM_MAX_MSG_SIZE: env.positiveInt(1024 * 1024),
  /** The dead-letter stream (`iot.*.dlq.>`): dead letters last here, listable and replayable, oldest discarded first. */
  DEAD_LETTER_STREAM: env.string({ fallback: 'DEAD_LETTERS' }),
  DEAD_LETTER_STREAM_MAX_BYTES: env.positiveInt(1024 ** 3),
  DEAD_LETTER_STREAM_MAX_AGE_MS: env.positiveInt(30 * DAY_MS),
  /** Bytes of an oversize payload kept in its dead letter. */
  DEAD_LETTER_PREFIX_BYTES: env.positiveInt(4096),
  /** Run the durable writer in this replica (read-only replicas set false). */
  WRITER_ENABLED: env.bool(true),
  WRITER_CONSUMER: env.string({ fallback: 'monitoring-writer' }),
  WRITER_BATCH_MAX: env.positiveInt(5000),
  /** Most points one writer transaction holds; a batch with more is written in several. */
  WRITER_BATCH_MAX_POINTS: env.positiveInt(50_000),
  /** Most payload bytes per batch and per pull request (raised to TELEMETRY_STREAM_MAX_MSG_SIZE + 64 KiB so the largest message can be pulled). */
  WRITER_BATCH_MAX_BYTES: env.positiveInt(8 * 1024 ** 2),
  /** Most payload bytes one writer replica holds pulled and not yet acked; it stops taking from the pull above it. */
  WRITER_MAX_HELD_BYTES: env.positiveInt(64 * 1024 ** 2),
  WRITER_BATCH_WAIT_MS: env.positiveInt(100),
  /** Batches one writer processes at once (decoding and committing overlap; each its own transaction). */
  WRITER_BATCHES_IN_FLIGHT: env.positiveInt(3),
  /** Short, so a killed writer's messages come back within seconds; the writer marks what it holds "in progress" every third of it. */
  WRITER_ACK_WAIT_MS: env.positiveInt(5000),
  /** Over all replicas; each replica holds at most WRITER_BATCHES_IN_FLIGHT + 1 batches and WRITER_MAX_HELD_BYTES. */
  WRITER_MAX_ACK_PENDING: env.positiveInt(20_000),
  /** Deliveries of one message; on the last one the writer dead-letters it (`max_deliver`) instead of trying again. */
  WRITER_MAX_DELIVER: env.positiveInt(10),
  WRITER_MAX_BACKOFF_MS: env.positiveInt(5000),
  INGEST_MAX_PAYLOAD_BYTES: env.positiveInt(256 * 1024),
  INGEST_MAX_POINTS: env.positiveInt(1000),
  INGEST_MAX_FUTURE_MS: env.positiveInt(5 * 60_000),
  INGEST_MAX_PAST_MS: env.positiveInt(7 * DAY_MS),
  /** Distinct metric names one device may have (each a `latest_points` row and evaluator state); a message adding one more is dead-lettered as `too_many_metrics`. */
  MONITORING_MAX_METRICS_PER_DEVICE: env.positiveInt(200),
  /** Telemetry messages per second one device may publish on average; the excess is acknowledged and dead-lettered as `rate_limited`. */
  MONITORING_DEVICE_RATE: env.positiveInt(1000),
  /** Messages one device may send at once above MONITORING_DEVICE_RATE. */
  MONITORING_DEVICE_BURST: env.positiveInt(5000),
  /** Samples older than this are dropped with their day partition. */
  TELEMETRY_RETENTION_DAYS: env.positiveInt(30),
  /** Shorter retention for some tenants: `tenantA=7,tenantB=14` (days); their older samples are deleted in chunks. */
  TELEMETRY_TENANT_RETENTION_DAYS: z
    .string()
    .optional()
    .superRefine((value, ctx) => {
      const parsed = parseTenantRetention(value);
      if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
    }),
  /**
   * Minute/hour/day rollups (downsampled history) older than this are deleted; kept longer than
   * raw points so history over long ranges survives their retention. At least TELEMETRY_RETENTION_DAYS.
   */
  TELEMETRY_ROLLUP_RETENTION_DAYS: env.positiveInt(400),
  /** Day partitions created ahead of time. */
  TELEMETRY_PARTITIONS_AHEAD_DAYS: env.positiveInt(3),
  /**
   * Points held per live client while a frame to it is in flight (frames have no fixed delay);
   * beyond it the oldest are dropped and the count is sent in the next frame.
   */
  // 2,000: 500 slow streams at 1k points/s held 779 MB with 10,000 and 418 MB with 2,000 (bench fanout).
  LIVE_CLIENT_BUFFER: env.positiveInt(2000),
  /** Longest time range (days) one QueryHistory or ListPoints may cover; wider → INVALID_ARGUMENT. */
  HISTORY_MAX_SPAN_DAYS: env.positiveInt(400),
  /** How often no-data alert rules are checked. */
  ALERT_CHECK_INTERVAL_MS: env.positiveInt(1000),
};

/** The monitoring service's configuration, as loaded and validated. */
export type MonitoringConfig = ConfigOf<typeof monitoringEnv>;

/** What a telemetry payload must respect. */
export function ingestLimits(config: MonitoringConfig): IngestLimits {
  return {
    maxPayloadBytes: config.INGEST_MAX_PAYLOAD_BYTES,
    maxPoints: config.INGEST_MAX_POINTS,
    maxFutureMs: config.INGEST_MAX_FUTURE_MS,
    maxPastMs: config.INGEST_MAX_PAST_MS,
    maxMetricsPerDevice: config.MONITORING_MAX_METRICS_PER_DEVICE,
    deviceRate: config.MONITORING_DEVICE_RATE,
    deviceBurst: config.MONITORING_DEVICE_BURST,
  };
}

/** How long telemetry is kept. */
export function retentionPolicy(config: MonitoringConfig): RetentionPolicy {
  return {
    globalDays: config.TELEMETRY_RETENTION_DAYS,
    // Rollups never go before the raw points they summarise.
    rollupDays: Math.max(config.TELEMETRY_ROLLUP_RETENTION_DAYS, config.TELEMETRY_RETENTION_DAYS),
    perTenant: parseTenantRetention(config.TELEMETRY_TENANT_RETENTION_DAYS) as Map<string, number>,
    partitionsAheadDays: config.TELEMETRY_PARTITIONS_AHEAD_DAYS,
  };
}

/** How the telemetry stream is kept. */
export function telemetryStreamOptions(config: MonitoringConfig): TelemetryStreamOptions {
  return {
    name: config.TELEMETRY_STREAM,
    maxBytes: config.TELEMETRY_STREAM_MAX_BYTES,
    maxAgeMs: config.TELEMETRY_STREAM_MAX_AGE_MS,
    duplicateWindowMs: config.TELEMETRY_DUPLICATE_WINDOW_MS,
    replicas: config.TELEMETRY_STREAM_REPLICAS,
    maxMsgSize: config.TELEMETRY_STREAM_MAX_MSG_SIZE,
  };
}

/** How the dead-letter stream is kept. */
export function deadLetterStreamOptions(config: MonitoringConfig): DeadLetterStreamOptions {
  return {
    name: config.DEAD_LETTER_STREAM,
    maxBytes: config.DEAD_LETTER_STREAM_MAX_BYTES,
    maxAgeMs: config.DEAD_LETTER_STREAM_MAX_AGE_MS,
    duplicateWindowMs: config.TELEMETRY_DUPLICATE_WINDOW_MS,
    replicas: config.TELEMETRY_STREAM_REPLICAS,
  };
}

/** How dead letters are written. */
export function deadLetterOptions(config: MonitoringConfig): DeadLetterOptions {
  return { prefixBytes: config.DEAD_LETTER_PREFIX_BYTES, timeoutMs: 5000 };
}

/** The writers' shared durable consumer. */
export function writerConsumerOptions(config: MonitoringConfig): WriterConsumerOptions {
  return {
    stream: config.TELEMETRY_STREAM,
    durable: config.WRITER_CONSUMER,
    ackWaitMs: config.WRITER_ACK_WAIT_MS,
    maxAckPending: config.WRITER_MAX_ACK_PENDING,
    maxDeliver: config.WRITER_MAX_DELIVER,
    maxRequestBytes: writerPullBytes(config),
  };
}

/**
 * Bytes one writer pull asks for: a batch's, but never less than the largest
 * message the stream stores plus room for its subject and headers (the
 * server refuses to deliver a message larger than the request).
 */
function writerPullBytes(config: MonitoringConfig): number {
  return Math.max(config.WRITER_BATCH_MAX_BYTES, config.TELEMETRY_STREAM_MAX_MSG_SIZE + 64 * 1024);
}

/** How the writer batches and retries. */
export function writerOptions(config: MonitoringConfig): WriterOptions {
  return {
    stream: config.TELEMETRY_STREAM,
    durable: config.WRITER_CONSUMER,
    batchMax: config.WRITER_BATCH_MAX,
    batchWaitMs: config.WRITER_BATCH_WAIT_MS,
    batchesInFlight: config.WRITER_BATCHES_IN_FLIGHT,
    batchMaxPoints: config.WRITER_BATCH_MAX_POINTS,
    batchMaxBytes: writerPullBytes(config),
    maxHeldBytes: config.WRITER_MAX_HELD_BYTES,
    ackWaitMs: config.WRITER_ACK_WAIT_MS,
    maxBackoffMs: config.WRITER_MAX_BACKOFF_MS,
    maxDeliver: config.WRITER_MAX_DELIVER,
  };
}
