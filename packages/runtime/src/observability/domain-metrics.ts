import { metrics } from './metrics-registry';

/**
 * The platform's own metrics, declared once here so services, dashboards and
 * alert rules agree on names and labels. Each getter registers on first use
 * (get-or-create), so calling it from several modules is fine:
 *
 * ```ts
 * const m = ingestMetrics();
 * m.messages.inc({ encoding: 'protobuf' });
 * m.deadLetters.inc({ reason: 'malformed' });
 * ```
 */

/** Buckets for counts of points per batch. */
const BATCH_SIZE_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000];
/** Buckets for database commit times, in seconds. */
const COMMIT_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Telemetry ingest: consumer, validation and the batched writer (monitoring). */
export function ingestMetrics() {
  return {
    /** Telemetry messages taken off the stream, by payload encoding (`protobuf`, `json`). */
    messages: metrics.counter('iot_ingest_messages_total', 'Telemetry messages consumed from the stream, by payload encoding.', ['encoding']),
    /** Points durably committed to the telemetry store. */
    points: metrics.counter('iot_ingest_points_total', 'Telemetry points committed to the store.'),
    /** Messages sent to the dead-letter subject, by reason (`malformed`, `unknown_device`, `oversize`, …). */
    deadLetters: metrics.counter('iot_dead_letters_total', 'Telemetry messages sent to the dead-letter subject, by reason.', ['reason']),
    /** Points per committed batch. */
    batchSize: metrics.histogram('iot_writer_batch_size', 'Points per batch committed by the writer.', [], BATCH_SIZE_BUCKETS),
    /** Time to write and commit one batch (the writer's view of database latency). */
    commitSeconds: metrics.histogram('iot_writer_commit_seconds', 'Seconds to write and commit one batch.', [], COMMIT_SECONDS_BUCKETS),
    /** Batches that failed to commit (messages are redelivered). */
    commitFailures: metrics.counter('iot_writer_commit_failures_total', 'Batches whose commit failed; their messages are redelivered.'),
    /**
     * Messages not yet delivered to the durable consumer (JetStream num_pending):
     * the ingest lag. Only replicas running the writer set it, so
     * `absent(iot_consumer_pending_messages)` means no writer runs.
     */
    consumerPending: metrics.gauge('iot_consumer_pending_messages', 'Messages in the stream not yet delivered to the consumer.', ['stream', 'consumer']),
    /** Delivered but not yet acknowledged messages (JetStream num_ack_pending). */
    consumerAckPending: metrics.gauge('iot_consumer_ack_pending_messages', 'Messages delivered to the consumer and not yet acknowledged.', ['stream', 'consumer']),
  };
}

/** Live telemetry streams to clients (monitoring). */
export function liveMetrics() {
  return {
    /** Open live streams. */
    streams: metrics.gauge('iot_live_streams', 'Open live telemetry streams.'),
    /** Frames sent to live clients. */
    framesSent: metrics.counter('iot_live_frames_sent_total', 'Frames sent on live telemetry streams.'),
    /** Points dropped (conflated) because a live client was slow. */
    pointsDropped: metrics.counter('iot_live_points_dropped_total', 'Points dropped on live streams because the client was slow.'),
  };
}

/** Caches in Redis (device lookups, JWKS). Hit ratio = hits / (hits + misses). */
export function cacheMetrics() {
  return {
    /** Cache lookups by cache name and result (`hit`, `miss`, `error`). */
    requests: metrics.counter('iot_cache_requests_total', 'Cache lookups by cache and result (hit, miss, error).', ['cache', 'result']),
  };
}

/**
 * Device credentials (device service). Devices failing to use their
 * credentials show up as dead letters with reasons `unknown_device`,
 * `revoked_device` and `device_mismatch` (the server itself refuses bad
 * connections before our code sees them).
 */
export function deviceMetrics() {
  return {
    /** Credential operations by kind (`issue`, `rotate`, `revoke`). */
    credentialOperations: metrics.counter('iot_device_credential_operations_total', 'Device credential operations by kind (issue, rotate, revoke).', ['operation']),
  };
}

/** Authentication in the signing service. */
export function authMetrics() {
  return {
    /** Logins by result (`success`, `bad_credentials`, `throttled`). */
    logins: metrics.counter('iot_auth_logins_total', 'Login attempts by result (success, bad_credentials, throttled).', ['result']),
  };
}
