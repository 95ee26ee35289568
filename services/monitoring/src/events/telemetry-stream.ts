import { AckPolicy, DeliverPolicy, DiscardPolicy, JetStreamManager, nanos, RetentionPolicy, StorageType, StreamConfig } from 'nats';
import { ALL_DEAD_LETTERS, ALL_TELEMETRY, JETSTREAM_ERROR, jetStreamErrorCode, withJetStreamStartupPatience } from '@iot-mesh/runtime';

/** How the telemetry stream is kept. */
export interface TelemetryStreamOptions {
  name: string;
  maxBytes: number;
  maxAgeMs: number;
  /** A repeated `Nats-Msg-Id` inside this window is stored once. */
  duplicateWindowMs: number;
  replicas: number;
  /**
   * Largest message the stream stores. NATS clients cannot publish beyond the
   * server's max_payload, but nats-server 2.9's MQTT listener can: this is
   * what refuses those bytes where they enter.
   */
  maxMsgSize: number;
}

/** How the dead-letter stream is kept: its own limits, discarding the oldest when full. */
export interface DeadLetterStreamOptions {
  name: string;
  maxBytes: number;
  maxAgeMs: number;
  /** A dead letter written again for the same original (a redelivery after a crash) inside this window is stored once. */
  duplicateWindowMs: number;
  replicas: number;
}

/**
 * Creates a limits-based file stream, or brings an existing one to `config`.
 * Safe to run from every replica at every start.
 */
async function ensureStream(jsm: JetStreamManager, name: string, config: Partial<StreamConfig>): Promise<void> {
  // A cluster that just formed answers creations with its startup codes for a while (operator mode loads accounts lazily).
  await withJetStreamStartupPatience(() => ensureStreamOnce(jsm, name, config));
}

async function ensureStreamOnce(jsm: JetStreamManager, name: string, config: Partial<StreamConfig>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await jsm.streams.info(name);
      // storage and retention cannot change on an existing stream; the rest can.
      const { storage: _s, retention: _r, ...changeable } = config;
      await jsm.streams.update(name, changeable);
      return;
    } catch (err) {
      if (jetStreamErrorCode(err) !== JETSTREAM_ERROR.streamNotFound) throw err;
    }
    try {
      await jsm.streams.add({ name, ...config });
      return;
    } catch (err) {
      // Another replica created it between our two calls: go round and update it.
      if (jetStreamErrorCode(err) !== JETSTREAM_ERROR.streamNameInUse || attempt > 2) throw err;
    }
  }
}

/** Creates the telemetry stream, or brings an existing one to the configured limits. */
export async function ensureTelemetryStream(jsm: JetStreamManager, options: TelemetryStreamOptions): Promise<void> {
  await ensureStream(jsm, options.name, {
    subjects: [ALL_TELEMETRY],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_bytes: options.maxBytes,
    max_age: nanos(options.maxAgeMs),
    max_msg_size: options.maxMsgSize,
    duplicate_window: nanos(options.duplicateWindowMs),
    num_replicas: options.replicas,
  });
}

/**
 * Creates the dead-letter stream (`iot.*.dlq.>`), or brings it to its limits.
 * It is what makes a dead letter last: the writer acks an original only
 * after this stream acknowledged its dead letter.
 */
export async function ensureDeadLetterStream(jsm: JetStreamManager, options: DeadLetterStreamOptions): Promise<void> {
  await ensureStream(jsm, options.name, {
    subjects: [ALL_DEAD_LETTERS],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    // Listing reads with direct gets by subject (a tenant's or a device's).
    allow_direct: true,
    max_bytes: options.maxBytes,
    max_age: nanos(options.maxAgeMs),
    duplicate_window: nanos(options.duplicateWindowMs),
    num_replicas: options.replicas,
  });
}

/** The writer's durable pull consumer. */
export interface WriterConsumerOptions {
  stream: string;
  durable: string;
  ackWaitMs: number;
  maxAckPending: number;
  /** Deliveries of one message before JetStream gives up on it; the writer dead-letters it on the last one. */
  maxDeliver: number;
  /** Most bytes one pull request may ask for (the consumer's max_bytes), so no replica is handed more than its bound. */
  maxRequestBytes?: number;
}

/** Creates (or updates) the durable pull consumer all writer replicas share. */
export async function ensureWriterConsumer(jsm: JetStreamManager, options: WriterConsumerOptions): Promise<void> {
  const changeable = {
    ack_wait: nanos(options.ackWaitMs),
    max_ack_pending: options.maxAckPending,
    max_deliver: options.maxDeliver,
    ...(options.maxRequestBytes ? { max_bytes: options.maxRequestBytes } : {}),
  };
  for (let attempt = 0; ; attempt++) {
    try {
      await jsm.consumers.info(options.stream, options.durable);
      await jsm.consumers.update(options.stream, options.durable, changeable);
      return;
    } catch (err) {
      if (jetStreamErrorCode(err) !== JETSTREAM_ERROR.consumerNotFound) throw err;
    }
    try {
      await jsm.consumers.add(options.stream, {
        durable_name: options.durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: ALL_TELEMETRY,
        ...changeable,
      });
      return;
    } catch (err) {
      if (jetStreamErrorCode(err) !== JETSTREAM_ERROR.consumerNameExists || attempt > 2) throw err;
    }
  }
}
