import type { JetStreamManager } from 'nats';
import { metrics } from '@iot-mesh/runtime';
import type { LiveObserver } from './domain/live';
import { DEAD_LETTER_REASONS, DeadLetterReason } from './events/telemetry-decoder';

/** Buckets for counts of points per batch. */
const BATCH_SIZE_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000];
/** Buckets for database commit times, in seconds. */
const COMMIT_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Telemetry ingest's Prometheus metrics: consumer, validation and the batched
 * writer. The names are what charts/ dashboards and alert rules query: keep them.
 * Get-or-create, so replicas started in one process share them.
 */
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
    /** Payload bytes the writer holds pulled and not yet acknowledged (bounded by WRITER_MAX_HELD_BYTES). */
    writerHeldBytes: metrics.gauge('iot_writer_held_bytes', 'Payload bytes the writer holds pulled and not yet acknowledged.'),
    /** Decoded points the writer holds not yet committed. */
    writerHeldPoints: metrics.gauge('iot_writer_held_points', 'Decoded telemetry points the writer holds not yet committed.'),
  };
}

/** Live telemetry streams' Prometheus metrics. */
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

/**
 * Counters of the ingest pipeline, kept as plain numbers so tests (and the
 * metrics layer, through the hooks) read them without the pipeline knowing
 * about Prometheus.
 */
export class IngestStats {
  /** Dead-lettered messages per reason. */
  readonly deadLetters: Record<DeadLetterReason, number> = Object.fromEntries(DEAD_LETTER_REASONS.map((r) => [r, 0])) as Record<DeadLetterReason, number>;
  /** Messages taken from the stream. */
  messagesReceived = 0;
  /** Batches committed. */
  batchesCommitted = 0;
  /** Points in committed batches. */
  pointsCommitted = 0;
  /** Of those, how many were new rows. */
  rowsInserted = 0;
  /** Size of the last committed batch, in points. */
  lastBatchPoints = 0;
  /** Failed write attempts (each is retried). */
  writeFailures = 0;
  /** Failed attempts to store a dead letter (each is retried; the original stays unacknowledged meanwhile). */
  deadLetterFailures = 0;
  /** Total milliseconds spent in committed writes. */
  writeMillis = 0;
  /** Messages waiting in this replica for the writer. */
  queued = 0;
  /** Payload bytes this replica's writer holds pulled and not yet acked (at most WRITER_MAX_HELD_BYTES). */
  heldBytes = 0;
  /** Decoded points this replica's writer holds not yet committed. */
  heldPoints = 0;
  /** The most `heldBytes` has been since start. */
  heldBytesPeak = 0;
  /** The most `heldPoints` has been since start. */
  heldPointsPeak = 0;

  /** Called for each message taken from the stream. */
  onMessage?: (encoding: 'json' | 'protobuf') => void;
  /** Called after each committed batch, for whoever wants a histogram. */
  onBatch?: (points: number, millis: number) => void;
  /** Called for each failed write attempt. */
  onWriteFailure?: () => void;
  /** Called for each dead letter. */
  onDeadLetter?: (reason: DeadLetterReason) => void;
  /** Called whenever what the writer holds changes. */
  onHeld?: (bytes: number, points: number) => void;

  /** Total dead letters over all reasons. */
  get deadLettersTotal(): number {
    return Object.values(this.deadLetters).reduce((a, b) => a + b, 0);
  }
}

/** Counters of live streaming as plain numbers; the live hub's observer. */
export class LiveStats implements LiveObserver {
  /** Live streams open now. */
  openStreams = 0;
  /** Frames sent so far. */
  framesSent = 0;
  /** Points pushed out of slow clients' buffers so far. */
  pointsDropped = 0;
  /** Called for each frame, for the metrics layer. */
  onFrame?: () => void;
  /** Called for each drop. */
  onDropped?: (points: number) => void;
  /** Called when the number of open streams changes. */
  onStreams?: (open: number) => void;

  frameSent(): void {
    this.framesSent++;
    this.onFrame?.();
  }

  droppedPoints(points: number): void {
    this.pointsDropped += points;
    this.onDropped?.(points);
  }

  streamsOpen(open: number): void {
    this.openStreams = open;
    this.onStreams?.(open);
  }
}

/**
 * Connects the pipeline's plain counters to the Prometheus metrics above,
 * and samples the consumer's lag. Returns a function that stops sampling.
 */
export function exportMonitoringMetrics(ingest: IngestStats, live: LiveStats, consumer?: { jsm: JetStreamManager; stream: string; durable: string; intervalMs?: number }): () => void {
  const im = ingestMetrics();
  const lm = liveMetrics();
  ingest.onMessage = (encoding) => im.messages.inc({ encoding });
  ingest.onDeadLetter = (reason) => im.deadLetters.inc({ reason });
  ingest.onBatch = (points, millis) => {
    im.points.inc(points);
    im.batchSize.observe(points);
    im.commitSeconds.observe(millis / 1000);
  };
  ingest.onWriteFailure = () => im.commitFailures.inc();
  ingest.onHeld = (bytes, points) => {
    im.writerHeldBytes.set(bytes);
    im.writerHeldPoints.set(points);
  };
  live.onFrame = () => lm.framesSent.inc();
  live.onDropped = (points) => lm.pointsDropped.inc(points);
  live.onStreams = (open) => lm.streams.set(open);
  if (!consumer) return () => undefined;
  const timer = setInterval(() => {
    consumer.jsm.consumers.info(consumer.stream, consumer.durable).then(
      (info) => {
        im.consumerPending.set({ stream: consumer.stream, consumer: consumer.durable }, info.num_pending);
        im.consumerAckPending.set({ stream: consumer.stream, consumer: consumer.durable }, info.num_ack_pending);
      },
      () => undefined,
    );
  }, consumer.intervalMs ?? 5000);
  timer.unref();
  return () => clearInterval(timer);
}
