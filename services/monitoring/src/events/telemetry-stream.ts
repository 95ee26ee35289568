import { AckPolicy, DeliverPolicy, DiscardPolicy, JetStreamManager, NatsError, nanos, RetentionPolicy, StorageType, StreamConfig } from 'nats';
import { ALL_TELEMETRY } from '@iot-mesh/runtime';

const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;
const STREAM_NAME_IN_USE = 10058;
const CONSUMER_NAME_EXISTS = 10013;

/** How the telemetry stream is kept. */
export interface TelemetryStreamOptions {
  name: string;
  maxBytes: number;
  maxAgeMs: number;
  /** A repeated `Nats-Msg-Id` inside this window is stored once. */
  duplicateWindowMs: number;
  replicas: number;
}

function apiCode(err: unknown): number | undefined {
  return (err as NatsError)?.api_error?.err_code;
}

/**
 * Creates the telemetry stream, or brings an existing one to the configured
 * limits. Safe to run from every replica at every start.
 */
export async function ensureTelemetryStream(jsm: JetStreamManager, options: TelemetryStreamOptions): Promise<void> {
  const config: Partial<StreamConfig> = {
    subjects: [ALL_TELEMETRY],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_bytes: options.maxBytes,
    max_age: nanos(options.maxAgeMs),
    duplicate_window: nanos(options.duplicateWindowMs),
    num_replicas: options.replicas,
  };
  for (let attempt = 0; ; attempt++) {
    try {
      await jsm.streams.info(options.name);
      // storage and retention cannot change on an existing stream; the rest can.
      const { storage: _s, retention: _r, ...changeable } = config;
      await jsm.streams.update(options.name, changeable);
      return;
    } catch (err) {
      if (apiCode(err) !== STREAM_NOT_FOUND) throw err;
    }
    try {
      await jsm.streams.add({ name: options.name, ...config });
      return;
    } catch (err) {
      // Another replica created it between our two calls: go round and update it.
      if (apiCode(err) !== STREAM_NAME_IN_USE || attempt > 2) throw err;
    }
  }
}

/** The writer's durable pull consumer. */
export interface WriterConsumerOptions {
  stream: string;
  durable: string;
  ackWaitMs: number;
  maxAckPending: number;
}

/** Creates (or updates) the durable pull consumer all writer replicas share. */
export async function ensureWriterConsumer(jsm: JetStreamManager, options: WriterConsumerOptions): Promise<void> {
  const changeable = { ack_wait: nanos(options.ackWaitMs), max_ack_pending: options.maxAckPending, max_deliver: -1 };
  for (let attempt = 0; ; attempt++) {
    try {
      await jsm.consumers.info(options.stream, options.durable);
      await jsm.consumers.update(options.stream, options.durable, changeable);
      return;
    } catch (err) {
      if (apiCode(err) !== CONSUMER_NOT_FOUND) throw err;
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
      if (apiCode(err) !== CONSUMER_NAME_EXISTS || attempt > 2) throw err;
    }
  }
}
