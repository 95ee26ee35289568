import mqtt, { MqttClient } from 'mqtt';
import { connect, headers as natsHeaders, NatsConnection, NatsError } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';

/** The transports a virtual device can use. */
export const TRANSPORTS = ['mqtt', 'nats'] as const;
export type Transport = (typeof TRANSPORTS)[number];

/** Per-message metadata; NATS carries it as headers, MQTT 3.1.1 has no headers and drops it. */
export interface MessageMeta {
  msgId?: string;
  traceparent?: string;
  /** Not counted in acknowledgements (state reports, replies): acks count telemetry only. */
  untracked?: boolean;
}

/** A message delivered to the device. `reply` is set for NATS requests (commands). */
export type InboundHandler = (payload: Uint8Array, reply: string | undefined) => void;

/** What a link reports about itself, counted by the fleet's statistics. */
export interface LinkEvents {
  onConnect?: (first: boolean) => void;
  onDisconnect?: () => void;
  onError?: (kind: 'connect' | 'publish' | 'denied' | 'other', message: string) => void;
  /** `count` messages were acknowledged by the server (MQTT PUBACK; NATS: see {@link NatsLink}). */
  onAck?: (count: number) => void;
  /**
   * `count` messages were sent but will never be acknowledged: MQTT QoS 0,
   * an MQTT publish that failed, NATS messages whose connection did not
   * stay up to confirm them. They may or may not have arrived.
   */
  onUnacknowledged?: (count: number) => void;
}

/** One device's connection to the message plane. */
export interface DeviceLink {
  readonly transport: Transport;
  /** Resolves once connected (first attempt may wait for the server). */
  connect(): Promise<void>;
  readonly connected: boolean;
  /** Queues a message; resolves when the link can take more (back-pressure), not when acknowledged. */
  publish(subject: string, payload: Uint8Array, meta?: MessageMeta): Promise<void>;
  /** Subscribes to a subject (dots; MQTT links map them to topics). */
  subscribe(subject: string, handler: InboundHandler): Promise<void>;
  /** Answers a request (NATS reply subject, or an MQTT topic). */
  respond(reply: string, payload: Uint8Array): void;
  /** Drops the connection abruptly, as a network failure would; the link reconnects by itself. */
  drop(): void;
  /** Closes for good, after flushing what is queued. */
  close(): Promise<void>;
}

/** How a device connects. */
export interface LinkOptions {
  transport: Transport;
  /** `nats://host:port` or `mqtt://host:port`. */
  url: string;
  /** Client id / connection name. */
  clientId: string;
  /** The device credential's NATS user JWT (an MQTT credential's is the MQTT password); none for an open development server. */
  token?: string;
  /** A NATS credential's user seed: signs the server's nonce. */
  seed?: string;
  /** MQTT QoS of telemetry: 1 waits for PUBACKs (counted as acks), 0 does not. */
  qos?: 0 | 1;
  /** Most unacknowledged messages before `publish` waits. */
  maxInFlight?: number;
  /** Wait between reconnect attempts (ms). */
  reconnectMs?: number;
  events?: LinkEvents;
}

/** Opens a link of the configured transport. */
export function createLink(options: LinkOptions): DeviceLink {
  return options.transport === 'mqtt' ? new MqttLink(options) : new NatsLink(options);
}

/** NATS subject ↔ MQTT topic: `a.b.c` ↔ `a/b/c` (how the NATS server's MQTT listener maps them). */
export function subjectToTopic(subject: string): string {
  return subject.replace(/\./g, '/');
}

class Gate {
  private waiters: Array<() => void> = [];
  /** Resolves now when `open()` is true, or once `release()` is called and it is. */
  async wait(open: () => boolean): Promise<void> {
    while (!open()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** A device over MQTT 3.1.1: credential as password, QoS 0/1 publishes, topics mapped from subjects. */
export class MqttLink implements DeviceLink {
  readonly transport = 'mqtt';
  private client?: MqttClient;
  private inFlight = 0;
  private everConnected = false;
  private readonly gate = new Gate();
  private readonly handlers = new Map<string, InboundHandler>();
  private closing = false;

  constructor(private readonly options: LinkOptions) {}

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  connect(): Promise<void> {
    const o = this.options;
    const client = mqtt.connect(o.url, {
      clientId: o.clientId,
      username: o.clientId,
      password: o.token,
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
      reconnectPeriod: o.reconnectMs ?? 1000,
      connectTimeout: 30_000,
      // Publishes made while offline wait in the client's queue and go out on reconnect.
      queueQoSZero: true,
    });
    this.client = client;
    client.on('connect', () => {
      o.events?.onConnect?.(!this.everConnected);
      this.everConnected = true;
      this.gate.release();
    });
    client.on('close', () => {
      if (this.everConnected && !this.closing) o.events?.onDisconnect?.();
    });
    client.on('error', (err) => o.events?.onError?.(this.everConnected ? 'other' : 'connect', err.message));
    client.on('message', (topic, payload) => {
      this.handlers.get(topic)?.(payload, undefined);
    });
    return new Promise((resolve, reject) => {
      const onConnect = () => {
        client.off('error', onFirstError);
        resolve();
      };
      const onFirstError = (err: Error) => {
        // Authentication failures are final: mqtt.js would otherwise retry forever.
        if (/Not authorized|Bad username or password/i.test(err.message)) {
          client.off('connect', onConnect);
          client.end(true);
          reject(err);
        }
      };
      client.once('connect', onConnect);
      client.on('error', onFirstError);
    });
  }

  async publish(subject: string, payload: Uint8Array, meta?: MessageMeta): Promise<void> {
    const client = this.client!;
    const qos = this.options.qos ?? 1;
    const max = this.options.maxInFlight ?? 256;
    await this.gate.wait(() => this.closing || this.inFlight < max);
    if (this.closing) return;
    this.inFlight++;
    client.publish(subjectToTopic(subject), payload as Buffer, { qos }, (err) => {
      this.inFlight--;
      if (err) this.options.events?.onError?.('publish', err.message);
      if (!meta?.untracked) {
        // Only a PUBACK acknowledges; QoS 0 and a failed publish never will.
        if (qos === 1 && !err) this.options.events?.onAck?.(1);
        else this.options.events?.onUnacknowledged?.(1);
      }
      if (this.inFlight < max) this.gate.release();
    });
  }

  async subscribe(subject: string, handler: InboundHandler): Promise<void> {
    const topic = subjectToTopic(subject);
    this.handlers.set(topic, handler);
    await this.client!.subscribeAsync(topic, { qos: 1 });
  }

  respond(reply: string, payload: Uint8Array): void {
    this.client?.publish(subjectToTopic(reply), payload as Buffer, { qos: 1 });
  }

  drop(): void {
    this.client?.stream?.destroy();
  }

  async close(): Promise<void> {
    this.closing = true;
    this.gate.release();
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const force = !client.connected;
      const timer = setTimeout(() => {
        client.end(true);
        resolve();
      }, 2000);
      client.end(force, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/**
 * A device over NATS: credential as a user JWT whose seed signs the server's
 * nonce (the JWT alone for an old bearer credential), message id and trace
 * context as headers. A device credential cannot receive a JetStream PubAck,
 * so NATS telemetry is at-most-once and nothing acknowledges a message as
 * stored. What is counted as acknowledged is the most a core NATS client can
 * know: the server read the message (a flush round trip returned) on a
 * connection that then stayed up for one more round trip. Everything else
 * is "sent, unacknowledged": messages published while disconnected (nats.js
 * drops its outbound buffer at every reconnect attempt), a flush that failed,
 * and the last confirmed batch before a reconnect (the server may have read
 * it and died before storing it). Connections are told apart by the server
 * INFO object, which nats.js replaces on every (re)connect.
 */
export class NatsLink implements DeviceLink {
  readonly transport = 'nats';
  private nc?: NatsConnection;
  private unflushed = 0;
  /** The connection (its INFO) the unflushed messages went out on. */
  private unflushedOn?: object;
  /** Read by the server, waiting for one more round trip on the same connection. */
  private provisional: { count: number; on?: object } = { count: 0 };
  private flushing?: Promise<void>;
  private closing = false;

  constructor(private readonly options: LinkOptions) {}

  get connected(): boolean {
    return !!this.nc && !this.nc.isClosed() && !this.closing;
  }

  async connect(): Promise<void> {
    const o = this.options;
    const nc = await connect({
      servers: o.url.split(','),
      name: o.clientId,
      authenticator: o.token ? deviceUserAuthenticator({ token: o.token, seed: o.seed }) : undefined,
      maxReconnectAttempts: -1,
      reconnectTimeWait: o.reconnectMs ?? 1000,
      waitOnFirstConnect: true,
      ignoreAuthErrorAbort: false,
    });
    this.nc = nc;
    o.events?.onConnect?.(true);
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect') o.events?.onDisconnect?.();
        else if (status.type === 'reconnect') o.events?.onConnect?.(false);
        else if (status.type === 'error') {
          const err = status.data as unknown as NatsError | string;
          const text = String((err as NatsError)?.message ?? err);
          o.events?.onError?.(/permission/i.test(text) ? 'denied' : 'other', text);
        }
      }
    })();
    void nc.closed().then((err) => {
      if (err && !this.closing) o.events?.onError?.('connect', err.message);
    });
  }

  async publish(subject: string, payload: Uint8Array, meta?: MessageMeta): Promise<void> {
    const nc = this.nc!;
    if (this.closing || nc.isClosed()) return;
    let h;
    if (meta?.msgId || meta?.traceparent) {
      h = natsHeaders();
      if (meta.msgId) h.set('Nats-Msg-Id', meta.msgId);
      if (meta.traceparent) h.set('traceparent', meta.traceparent);
    }
    const on = nc.info;
    try {
      nc.publish(subject, payload, h ? { headers: h } : undefined);
    } catch (err) {
      this.options.events?.onError?.('publish', (err as Error).message);
      if (!meta?.untracked) this.unacknowledged(1);
      return;
    }
    if (!meta?.untracked) {
      if (on === undefined) {
        // Disconnected: nats.js buffers it, but the next reconnect attempt may drop the buffer.
        this.unacknowledged(1);
      } else {
        if (this.unflushed > 0 && this.unflushedOn !== on) {
          this.unacknowledged(this.unflushed);
          this.unflushed = 0;
        }
        this.unflushedOn = on;
        this.unflushed++;
      }
    }
    const max = this.options.maxInFlight ?? 256;
    if (!this.flushing) this.flushing = this.flush();
    if (this.unflushed >= max) await this.flushing;
  }

  private unacknowledged(count: number): void {
    if (count > 0) this.options.events?.onUnacknowledged?.(count);
  }

  /**
   * One flush round trip: the server has read what was published before it
   * on this connection. It confirms the previous round trip's batch when the
   * connection is still the same, and makes this one's provisional.
   */
  private async flush(): Promise<void> {
    const nc = this.nc!;
    // Let the current tick's publishes join this round trip.
    await new Promise((resolve) => setImmediate(resolve));
    const covered = this.unflushed;
    const on = this.unflushedOn;
    this.unflushed = 0;
    try {
      await nc.flush();
      const now = nc.info;
      const previous = this.provisional;
      if (previous.count > 0) {
        if (now !== undefined && previous.on === now) this.options.events?.onAck?.(previous.count);
        else this.unacknowledged(previous.count);
      }
      if (covered > 0 && (now === undefined || on !== now)) {
        this.unacknowledged(covered);
        this.provisional = { count: 0 };
      } else {
        this.provisional = { count: covered, on };
      }
    } catch (err) {
      if (!this.closing) this.options.events?.onError?.('publish', (err as Error).message);
      this.unacknowledged(covered + this.provisional.count);
      this.provisional = { count: 0 };
    } finally {
      this.flushing = undefined;
      if (this.unflushed > 0 && !nc.isClosed()) this.flushing = this.flush();
    }
  }

  async subscribe(subject: string, handler: InboundHandler): Promise<void> {
    this.nc!.subscribe(subject, { callback: (err, msg) => (err ? undefined : handler(msg.data, msg.reply)) });
    await this.nc!.flush();
  }

  respond(reply: string, payload: Uint8Array): void {
    if (this.nc && !this.nc.isClosed()) this.nc.publish(reply, payload);
  }

  drop(): void {
    void this.nc?.reconnect().catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const nc = this.nc;
    if (!nc || nc.isClosed()) {
      this.unacknowledged(this.unflushed + this.provisional.count);
      return;
    }
    while (this.flushing) await this.flushing.catch(() => undefined);
    // A last round trip settles the provisional batch (and anything unflushed).
    await this.flush();
    this.unacknowledged(this.provisional.count);
    this.provisional = { count: 0 };
    await nc.drain().catch(() => nc.close());
  }
}
