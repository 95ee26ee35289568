import type { JetStreamManager } from 'nats';
import { ingestMetrics, liveMetrics } from '@iot-mesh/runtime';
import type { IngestStats } from './ingest/stats';
import type { LiveStats } from './live/live-hub';

/**
 * Connects the pipeline's plain counters to the platform's Prometheus
 * metrics (names declared once in the runtime's domain-metrics catalogue),
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
