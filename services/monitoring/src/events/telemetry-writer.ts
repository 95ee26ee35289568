import type { ConsumerMessages, JsMsg, NatsConnection } from 'nats';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger, payloadEncoding, withBatchSpan } from '@iot-mesh/runtime';
import type { PointRow, TelemetryStore } from '../store/telemetry-store';
import type { IngestStats } from '../metrics';
import { publishDeadLetter } from './dead-letters';
import { AcceptedTelemetry, TelemetryDecoder } from './telemetry-decoder';

/** How the writer batches. */
export interface WriterOptions {
  stream: string;
  durable: string;
  /** Most messages per batch (one transaction). */
  batchMax: number;
  /** Longest a message waits for its batch to fill. */
  batchWaitMs: number;
  /** The consumer's ack wait: held messages are marked "in progress" well within it. */
  ackWaitMs: number;
  /** Longest pause between retries while the database fails. */
  maxBackoffMs: number;
}

/** What the writer needs. */
export interface WriterDeps {
  nc: NatsConnection;
  store: TelemetryStore;
  /** The process's one decoder (shared with the live fan-out). */
  decoder: TelemetryDecoder;
  stats: IngestStats;
  log: Logger;
  options: WriterOptions;
  /** Called with the messages of each committed batch. */
  onCommitted?: (accepted: AcceptedTelemetry[]) => void;
  /** (Re)creates the durable consumer; called before consuming again if consumption ended (consumer deleted, stream recreated). */
  ensureConsumer?: () => Promise<void>;
}

/**
 * The durable writer: pulls from the shared consumer (any number of replicas
 * share it), validates, dead-letters what is bad, writes the rest in one
 * transaction per batch and acks only after the commit. While the database
 * fails it retries the same batch with back-off, keeping its messages
 * "in progress", and pulls nothing beyond the consumer's max_ack_pending, so
 * the backlog stays in JetStream until the database is back.
 */
export class TelemetryWriter {
  private readonly queue: JsMsg[] = [];
  /** Messages taken from the queue and not yet acked (at most two batches: one committing, one being prepared). */
  private readonly inFlight = new Set<JsMsg>();
  private messages?: ConsumerMessages;
  private running = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  private heartbeat?: NodeJS.Timeout;

  constructor(private readonly deps: WriterDeps) {}

  /** Starts pulling and writing. */
  async start(): Promise<void> {
    this.running = true;
    await this.consume();
    this.heartbeat = setInterval(() => this.markInProgress(), Math.max(1000, Math.floor(this.deps.options.ackWaitMs / 3)));
    this.heartbeat.unref();
    this.loop = this.run().catch((err: Error) => this.deps.log.error({ err: err.message }, 'telemetry writer stopped unexpectedly'));
  }

  /** Starts pulling; if pulling ever ends while running, starts again (recreating the consumer when needed). */
  private async consume(): Promise<void> {
    const { nc, options } = this.deps;
    const consumer = await nc.jetstream().consumers.get(options.stream, options.durable);
    const messages = await consumer.consume({
      max_messages: options.batchMax,
      // End (and let us recreate it) rather than wait for someone else to restore a deleted consumer or stream.
      abort_on_missing_resource: true,
      expires: 5000,
      callback: (msg) => {
        this.queue.push(msg);
        this.deps.stats.messagesReceived++;
        this.deps.stats.onMessage?.(payloadEncoding(msg.data));
        this.deps.stats.queued = this.queue.length;
        if (this.queue.length === 1 || this.queue.length >= options.batchMax) this.wake?.();
      },
    });
    this.messages = messages;
    void messages.closed().then(async (err) => {
      if (!this.running) return;
      this.deps.log.warn({ err: err instanceof Error ? err.message : undefined }, 'telemetry consumption ended; starting again');
      for (let delay = 500; this.running; delay = Math.min(delay * 2, this.deps.options.maxBackoffMs)) {
        await sleep(delay);
        if (!this.running) return;
        try {
          await this.deps.ensureConsumer?.();
          await this.consume();
          return;
        } catch (e) {
          this.deps.log.warn({ err: (e as Error).message, retryInMs: delay }, 'cannot consume telemetry yet');
        }
      }
    });
  }

  /** Stops pulling, finishes (or gives back) the batch in hand and returns queued messages for redelivery. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.messages?.stop();
    this.wake?.();
    const timeout = new AbortController();
    await Promise.race([this.loop, sleep(5000, undefined, { signal: timeout.signal }).catch(() => undefined)]);
    timeout.abort();
    clearInterval(this.heartbeat);
    for (const msg of [...this.inFlight, ...this.queue.splice(0)]) msg.nak();
    this.inFlight.clear();
  }

  private markInProgress(): void {
    for (const msg of this.inFlight) msg.working();
    for (const msg of this.queue) msg.working();
  }

  /** Resolves when woken (a message arrived, a batch filled, stop) or after `ms`. */
  private waitForWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === Infinity ? undefined : setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  /**
   * Takes batches off the queue. A batch is decoded while the previous one
   * commits (PostgreSQL and this process then work at the same time), and
   * commits only after the previous one did: at most two batches in hand.
   */
  private async run(): Promise<void> {
    const { batchMax, batchWaitMs } = this.deps.options;
    let previous: Promise<void> = Promise.resolve();
    try {
      while (this.running) {
        if (this.queue.length === 0) await this.waitForWake(Infinity);
        if (this.running && this.queue.length < batchMax) await this.waitForWake(batchWaitMs);
        if (!this.running) break;
        const batch = this.queue.splice(0, batchMax);
        this.deps.stats.queued = this.queue.length;
        if (batch.length === 0) continue;
        for (const msg of batch) this.inFlight.add(msg);
        const after = previous;
        // One consumer span per batch, linked to each message's publisher; the store's queries are its children.
        const current = withBatchSpan(batch, () => this.process(batch, after), { destination: this.deps.options.stream, consumerGroup: this.deps.options.durable });
        await previous;
        previous = current;
      }
    } finally {
      await previous;
    }
  }

  /** Retries `fn` with back-off until it succeeds or the writer stops (then undefined). */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    for (let delay = 100; ; delay = Math.min(delay * 2, this.deps.options.maxBackoffMs)) {
      try {
        return await fn();
      } catch (err) {
        this.deps.stats.writeFailures++;
        this.deps.stats.onWriteFailure?.();
        this.deps.log.warn({ err: (err as Error).message, retryInMs: delay }, `${what} failed; holding the batch and retrying`);
        if (!this.running) return undefined;
        await sleep(delay);
        if (!this.running) return undefined;
      }
    }
  }

  /** Decodes a batch, dead-letters what is bad, then (after `previousCommitted`) writes and acks the rest. */
  private async process(batch: JsMsg[], previousCommitted: Promise<void>): Promise<void> {
    const { nc, store, decoder, stats } = this.deps;
    const accepted: { msg: JsMsg; decoded: AcceptedTelemetry }[] = [];
    for (const msg of batch) {
      // The stream's own timestamp is stable across redeliveries, so points without a time keep theirs.
      const receivedAt = new Date(Math.floor(msg.info.timestampNanos / 1e6));
      const decoded = await this.retrying('device lookup', () => decoder.decode({ subject: msg.subject, data: msg.data, receivedAt }));
      if (!decoded) return; // stopping: stop() gives the batch back
      if (decoded.ok) {
        accepted.push({ msg, decoded });
      } else {
        publishDeadLetter(nc, stats, msg.subject, msg.data, decoded, msg.headers?.get('Nats-Msg-Id') || undefined);
        msg.ack();
        this.inFlight.delete(msg);
      }
    }
    await previousCommitted;
    const rows: PointRow[] = accepted.flatMap((a) => a.decoded.rows);
    if (rows.length > 0) {
      const started = Date.now();
      const result = await this.retrying('telemetry write', () => store.write(rows));
      if (!result) return;
      const millis = Date.now() - started;
      stats.batchesCommitted++;
      stats.pointsCommitted += rows.length;
      stats.rowsInserted += result.inserted;
      stats.lastBatchPoints = rows.length;
      stats.writeMillis += millis;
      stats.onBatch?.(rows.length, millis);
    }
    for (const { msg } of accepted) {
      msg.ack();
      this.inFlight.delete(msg);
    }
    if (accepted.length > 0) this.deps.onCommitted?.(accepted.map((a) => a.decoded));
  }
}
