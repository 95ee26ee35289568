import type { DataPoint } from '../../../../gen/ts/iot/monitoring/v1/telemetry';
import { KnownDevices, labelsMatch, TelemetryMessage, toDataPoint } from './telemetry';

/** What a live client asked for. */
export interface LiveFilter {
  /** Empty: every device (matching labels). */
  deviceIds: Set<string>;
  labels: Record<string, string>;
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
 * One live client's bounded buffer. Points beyond `capacity` push out the
 * oldest ones (a live view wants the newest); the number pushed out is
 * reported with the next frame.
 */
export class LiveClient {
  private buffer: DataPoint[] = [];
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

  /** Buffers one point for the next frame. */
  push(point: DataPoint): void {
    if (this.buffer.length >= this.capacity) {
      this.buffer.shift();
      this.dropped++;
      this.observer.droppedPoints(1);
    }
    this.buffer.push(point);
    this.waiter?.();
  }

  /** Resolves once there is something to send (or the signal aborts). */
  ready(signal: AbortSignal): Promise<void> {
    if (this.buffer.length > 0 || this.dropped > 0 || signal.aborted) return Promise.resolve();
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
  take(): { points: DataPoint[]; droppedPoints: bigint } {
    const frame = { points: this.buffer, droppedPoints: BigInt(this.dropped) };
    this.buffer = [];
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

/**
 * Fans validated telemetry out to live clients, per tenant, filtered by
 * device, labels and metric. It is handed each message as soon as it is
 * decoded (never after the database), and holds no connection of its own.
 */
export class LiveHub {
  private readonly tenants = new Map<string, Set<LiveClient>>();
  private open_ = 0;

  constructor(
    private readonly devices: KnownDevices,
    private readonly capacity: number,
    private readonly observer: LiveObserver,
  ) {}

  /** Registers a client; call `close()` on it when the stream ends. */
  open(tenantId: string, filter: LiveFilter): LiveClient {
    let clients = this.tenants.get(tenantId);
    if (!clients) this.tenants.set(tenantId, (clients = new Set()));
    const client = new LiveClient(tenantId, filter, this.capacity, this.observer, (c) => this.remove(c));
    clients.add(client);
    this.observer.streamsOpen(++this.open_);
    return client;
  }

  /** True while some client watches the tenant: telemetry of other tenants need not be decoded for live. */
  wants(tenantId: string): boolean {
    return this.tenants.has(tenantId);
  }

  /** Takes a message as the fan-out decodes it: delivered the moment it is decoded, in no queue. */
  receive(decoded: Promise<TelemetryMessage | undefined>): void {
    void decoded.then((message) => message && this.deliver(message));
  }

  /** Pushes a message's points to every client whose filter they pass. */
  deliver(message: TelemetryMessage): void {
    const clients = this.tenants.get(message.tenantId);
    if (!clients) return;
    const labels = this.devices.get(message.tenantId, message.deviceId)?.labels;
    for (const client of clients) {
      const f = client.filter;
      if (f.deviceIds.size > 0 ? !f.deviceIds.has(message.deviceId) : !labelsMatch(f.labels, labels)) continue;
      for (const row of message.rows) {
        if (f.metrics.size > 0 && !f.metrics.has(row.metric)) continue;
        client.push(toDataPoint(row));
      }
    }
  }

  private remove(client: LiveClient): void {
    this.observer.streamsOpen(--this.open_);
    const clients = this.tenants.get(client.tenantId);
    if (!clients) return;
    clients.delete(client);
    if (clients.size === 0) this.tenants.delete(client.tenantId);
  }

  /** Forgets every client (at shutdown). */
  stop(): void {
    this.tenants.clear();
  }
}
