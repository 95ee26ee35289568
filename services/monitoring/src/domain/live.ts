import type { DataPoint } from '../../../../gen/ts/iot/monitoring/v1/telemetry';
import { inAnyGroup, KnownDevices, labelsMatch, TelemetryMessage, toDataPoint, unknownGroup } from './telemetry';

/** What a live client asked for. */
export interface LiveFilter {
  /** Empty: every device (matching labels). */
  deviceIds: Set<string>;
  labels: Record<string, string>;
  /** Device group ids (with no device ids): only their members at each message. Empty: no group condition. */
  groupIds: string[];
  /** Empty: every metric. */
  metrics: Set<string>;
}

/** Told what live streaming does, for whoever counts it (the metrics layer). */
export interface LiveObserver {
  /** A frame was taken for sending. */
  frameSent(): void;
  /** Points were pushed out of a slow client's buffer. */
  droppedPoints(points: number): void;
  /** The number of open live streams changed. */
  streamsOpen(open: number): void;
}

/**
 * The points of one message that one kind of filter lets through, encoded
 * once as a frame fragment: a frame is its fragments concatenated (repeated
 * fields of concatenated Protobuf messages append), so every stream that
 * wants these points shares the same bytes.
 */
export interface LiveChunk {
  bytes: Uint8Array;
  points: number;
}

/** Encodes points as a frame fragment (the transport's wire form; the hub does not know it). */
export type LiveEncoder = (points: DataPoint[]) => Uint8Array;

/** What one frame to one client carries: shared fragments and what was dropped since the last frame. */
export interface LiveFrame {
  chunks: Uint8Array[];
  droppedPoints: number;
}

/**
 * One live client's bounded buffer of shared fragments. It only fills while
 * a frame to this client is in flight (an idle stream takes each fragment at
 * once); beyond `capacity` points the oldest fragments are pushed out (a live
 * view wants the newest) and the number of points pushed out is reported
 * with the next frame. Memory per client is bounded by references to
 * fragments every client shares.
 */
export class LiveClient {
  private chunks: LiveChunk[] = [];
  private head = 0;
  private buffered = 0;
  private dropped = 0;
  private waiter?: () => void;
  /** True once the stream ended. */
  closed = false;

  constructor(
    readonly tenantId: string,
    readonly filter: LiveFilter,
    private readonly capacity: number,
    private readonly observer: LiveObserver,
    private readonly onClose: (client: LiveClient) => void,
  ) {}

  /** Buffers one shared fragment for the next frame. */
  push(chunk: LiveChunk): void {
    this.chunks.push(chunk);
    this.buffered += chunk.points;
    let dropped = 0;
    // The newest fragment always stays, even if it alone exceeds the capacity.
    while (this.buffered > this.capacity && this.chunks.length - this.head > 1) {
      const oldest = this.chunks[this.head++];
      this.buffered -= oldest.points;
      dropped += oldest.points;
    }
    if (dropped > 0) {
      this.dropped += dropped;
      this.observer.droppedPoints(dropped);
    }
    this.waiter?.();
  }

  /** Resolves once there is something to send (or the signal aborts). */
  ready(signal: AbortSignal): Promise<void> {
    if (this.chunks.length > this.head || this.dropped > 0 || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.waiter = undefined;
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiter = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Takes everything buffered as one frame. */
  take(): LiveFrame {
    const frame = { chunks: this.chunks.slice(this.head).map((c) => c.bytes), droppedPoints: this.dropped };
    this.chunks = [];
    this.head = 0;
    this.buffered = 0;
    this.dropped = 0;
    this.observer.frameSent();
    return frame;
  }

  /** Ends the client: it receives nothing more. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this);
  }
}

/** A key naming which metrics a filter lets through: clients with equal keys share fragments. */
function metricsKey(metrics: Set<string>): string {
  return metrics.size === 0 ? '' : [...metrics].sort().join('\u0000');
}

/** The clients of one tenant, indexed so that a message finds its watchers without scanning the others. */
interface TenantClients {
  /** Clients naming devices, by device. */
  byDevice: Map<string, Set<LiveClient>>;
  /** Clients selecting by labels (or watching every device). */
  bySelector: Set<LiveClient>;
  size: number;
}

/**
 * Fans validated telemetry out to live clients, per tenant, filtered by
 * device, labels and metric. It is handed each message as soon as it is
 * decoded (never after the database), and holds no connection of its own.
 * Each message is encoded once per distinct metric filter among the clients
 * that want it, whatever their number; each client then holds a reference.
 */
export class LiveHub {
  private readonly tenants = new Map<string, TenantClients>();
  private readonly metricKeys = new WeakMap<LiveClient, string>();
  private open_ = 0;

  constructor(
    private readonly devices: KnownDevices,
    private readonly capacity: number,
    private readonly observer: LiveObserver,
    private readonly encode: LiveEncoder,
  ) {}

  /** Registers a client; call `close()` on it when the stream ends. */
  open(tenantId: string, filter: LiveFilter): LiveClient {
    let clients = this.tenants.get(tenantId);
    if (!clients) this.tenants.set(tenantId, (clients = { byDevice: new Map(), bySelector: new Set(), size: 0 }));
    const client = new LiveClient(tenantId, filter, this.capacity, this.observer, (c) => this.remove(c));
    this.metricKeys.set(client, metricsKey(filter.metrics));
    if (filter.deviceIds.size === 0) clients.bySelector.add(client);
    for (const deviceId of filter.deviceIds) {
      let set = clients.byDevice.get(deviceId);
      if (!set) clients.byDevice.set(deviceId, (set = new Set()));
      set.add(client);
    }
    clients.size++;
    this.observer.streamsOpen(++this.open_);
    return client;
  }

  /** The first of `groupIds` the tenant has no group of, or undefined (checked before a stream opens). */
  unknownGroup(tenantId: string, groupIds: readonly string[]): string | undefined {
    return unknownGroup(this.devices, tenantId, groupIds);
  }

  /** True while some client watches the tenant: telemetry of other tenants need not be decoded for live. */
  wants(tenantId: string): boolean {
    return this.tenants.has(tenantId);
  }

  /** Takes a message as the fan-out decodes it: delivered the moment it is decoded, in no queue. */
  receive(decoded: Promise<TelemetryMessage | undefined>): void {
    void decoded.then((message) => message && this.deliver(message));
  }

  /** Pushes a message's points to every client whose filter they pass, encoded once per metric filter. */
  deliver(message: TelemetryMessage): void {
    const clients = this.tenants.get(message.tenantId);
    if (!clients) return;
    const chunks = new Map<string, LiveChunk | null>();
    const points = message.rows.map(toDataPoint);
    const chunkFor = (client: LiveClient): LiveChunk | null => {
      const key = this.metricKeys.get(client) ?? '';
      let chunk = chunks.get(key);
      if (chunk === undefined) {
        const metrics = client.filter.metrics;
        const wanted = metrics.size === 0 ? points : points.filter((p) => metrics.has(p.metric));
        chunk = wanted.length === 0 ? null : { bytes: this.encode(wanted), points: wanted.length };
        chunks.set(key, chunk);
      }
      return chunk;
    };
    const named = clients.byDevice.get(message.deviceId);
    if (named) {
      for (const client of named) {
        const chunk = chunkFor(client);
        if (chunk) client.push(chunk);
      }
    }
    if (clients.bySelector.size > 0) {
      const device = this.devices.get(message.tenantId, message.deviceId);
      for (const client of clients.bySelector) {
        if (!labelsMatch(client.filter.labels, device?.labels)) continue;
        if (client.filter.groupIds.length > 0 && !inAnyGroup(this.devices, device, client.filter.groupIds)) continue;
        const chunk = chunkFor(client);
        if (chunk) client.push(chunk);
      }
    }
  }

  private remove(client: LiveClient): void {
    this.observer.streamsOpen(--this.open_);
    const clients = this.tenants.get(client.tenantId);
    if (!clients) return;
    clients.bySelector.delete(client);
    for (const deviceId of client.filter.deviceIds) {
      const set = clients.byDevice.get(deviceId);
      set?.delete(client);
      if (set?.size === 0) clients.byDevice.delete(deviceId);
    }
    if (--clients.size === 0) this.tenants.delete(client.tenantId);
  }

  /** Forgets every client (at shutdown). */
  stop(): void {
    this.tenants.clear();
  }
}
