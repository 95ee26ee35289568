import { ingestMetrics, liveMetrics } from './domain-metrics';

/**
 * The counters an ingest pipeline keeps as plain numbers (the monitoring
 * service's `IngestStats` fits), so the domain code never mentions
 * Prometheus: hooks feed the histograms, running totals are read at scrape time.
 */
export interface IngestCounters {
  messagesReceived: number;
  pointsCommitted: number;
  writeFailures: number;
  queued: number;
  deadLetters: Record<string, number>;
  onBatch?: (points: number, millis: number) => void;
  onDeadLetter?: (reason: string) => void;
}

/** Counters of live streaming (the monitoring service's `LiveStats` fits). */
export interface LiveCounters {
  openStreams: number;
  framesSent: number;
  pointsDropped: number;
}

/** A counter whose value is a running total kept elsewhere, read at scrape time. */
function totalFrom(counter: { reset(): void; inc(value: number): void; inc(labels: Record<string, string>, value: number): void }, read: () => number | Record<string, number>): void {
  (counter as unknown as { collect: () => void }).collect = () => {
    counter.reset();
    const value = read();
    if (typeof value === 'number') {
      if (value > 0) counter.inc(value);
    } else {
      for (const [reason, n] of Object.entries(value)) counter.inc({ reason }, n);
    }
  };
}

/**
 * Exposes an ingest pipeline's counters as `iot_ingest_messages_total`,
 * `iot_ingest_points_total`, `iot_dead_letters_total{reason}`,
 * `iot_writer_commit_failures_total`, `iot_writer_queued_messages`, and its
 * batches as `iot_writer_batch_size` / `iot_writer_commit_seconds`.
 * One pipeline per process (the last bound wins).
 */
export function exportIngestCounters(stats: IngestCounters): void {
  const m = ingestMetrics();
  totalFrom(m.messages, () => stats.messagesReceived);
  totalFrom(m.points, () => stats.pointsCommitted);
  totalFrom(m.commitFailures, () => stats.writeFailures);
  totalFrom(m.deadLetters, () => stats.deadLetters);
  (m.queued as unknown as { collect: () => void }).collect = () => m.queued.set(stats.queued);
  const previous = stats.onBatch;
  stats.onBatch = (points, millis) => {
    m.batchSize.observe(points);
    m.commitSeconds.observe(millis / 1000);
    previous?.(points, millis);
  };
}

/** Exposes live-stream counters as `iot_live_streams`, `iot_live_frames_sent_total`, `iot_live_points_dropped_total`. */
export function exportLiveCounters(stats: LiveCounters): void {
  const m = liveMetrics();
  (m.streams as unknown as { collect: () => void }).collect = () => m.streams.set(stats.openStreams);
  totalFrom(m.framesSent, () => stats.framesSent);
  totalFrom(m.pointsDropped, () => stats.pointsDropped);
}
