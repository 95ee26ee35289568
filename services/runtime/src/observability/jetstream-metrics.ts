import type { JetStreamManager } from 'nats';
import { ingestMetrics } from './domain-metrics';

const observed = new Map<string, { jsm: JetStreamManager; stream: string; durable: string }>();
let collecting = false;

/**
 * Reports a durable JetStream consumer's backlog at scrape time:
 * `iot_consumer_pending_messages` (not yet delivered: the ingest lag) and
 * `iot_consumer_ack_pending_messages` (delivered, not yet acknowledged).
 * A consumer that cannot be read (NATS down) is left out of that scrape.
 */
export function observeJetStreamConsumer(jsm: JetStreamManager, stream: string, durable: string): () => void {
  const key = `${stream}/${durable}`;
  observed.set(key, { jsm, stream, durable });
  const m = ingestMetrics();
  if (!collecting) {
    collecting = true;
    // The pending gauge's collect fills both gauges; prom-client awaits it before serialising.
    const pending = m.consumerPending as unknown as { collect?: () => Promise<void> };
    pending.collect = async () => {
      m.consumerPending.reset();
      m.consumerAckPending.reset();
      await Promise.all(
        [...observed.values()].map(async (c) => {
          const info = await c.jsm.consumers.info(c.stream, c.durable).catch(() => undefined);
          if (!info) return;
          m.consumerPending.set({ stream: c.stream, consumer: c.durable }, info.num_pending);
          m.consumerAckPending.set({ stream: c.stream, consumer: c.durable }, info.num_ack_pending);
        }),
      );
    };
  }
  return () => void observed.delete(key);
}
