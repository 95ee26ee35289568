import type { NatsConnection, Subscription } from 'nats';
import type { DataPoint } from '../../../../gen/ts/iot/monitoring/v1/telemetry';
import type { Logger } from '@iot-mesh/runtime';
import { decodeTelemetry, IngestLimits } from '../ingest/decode';
import { DeviceDirectory, labelsMatch } from '../ingest/device-directory';
import { toDataPoint } from '../points';

/** What a live client asked for. */
export interface LiveFilter {
  /** Empty: every device (matching labels). */
  deviceIds: Set<string>;
  labels: Record<string, string>;
  /** Empty: every metric. */
  metrics: Set<string>;
}

/** Counters of live streaming, for the metrics layer. */
export class LiveStats {
  openStreams = 0;
  framesSent = 0;
  pointsDropped = 0;
  onFrame?: () => void;
  onDropped?: (points: number) => void;
  onStreams?: (open: number) => void;
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
  closed = false;

  constructor(
    readonly tenantId: string,
    readonly filter: LiveFilter,
    private readonly capacity: number,
    private readonly stats: LiveStats,
    private readonly onClose: (client: LiveClient) => void,
  ) {}

  push(point: DataPoint): void {
    if (this.buffer.length >= this.capacity) {
      this.buffer.shift();
      this.dropped++;
      this.stats.pointsDropped++;
      this.stats.onDropped?.(1);
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
    return frame;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this);
  }
}

/**
 * Fans telemetry out to live clients straight from core NATS (never waiting
 * for the database): one subscription per tenant that has clients, shared by
 * all of them, validated like the writer does so rejected data never shows.
 */
export class LiveHub {
  private readonly tenants = new Map<string, { subscription: Subscription; clients: Set<LiveClient> }>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly directory: DeviceDirectory,
    private readonly limits: IngestLimits,
    private readonly capacity: number,
    readonly stats: LiveStats,
    private readonly log: Logger,
  ) {}

  /** Registers a client; call `close()` on it when the stream ends. */
  open(tenantId: string, filter: LiveFilter): LiveClient {
    let tenant = this.tenants.get(tenantId);
    if (!tenant) {
      const clients = new Set<LiveClient>();
      const subscription = this.nc.subscribe(`iot.${tenantId}.dev.*.tel`, {
        callback: (err, msg) => {
          if (err) return;
          void this.deliver(clients, msg.subject, msg.data);
        },
      });
      tenant = { subscription, clients };
      this.tenants.set(tenantId, tenant);
    }
    const client = new LiveClient(tenantId, filter, this.capacity, this.stats, (c) => this.remove(c));
    tenant.clients.add(client);
    this.stats.openStreams++;
    this.stats.onStreams?.(this.stats.openStreams);
    return client;
  }

  /** Resolves once the subscriptions opened so far are known to the server. */
  async flush(): Promise<void> {
    await this.nc.flush();
  }

  private remove(client: LiveClient): void {
    const tenant = this.tenants.get(client.tenantId);
    this.stats.openStreams--;
    this.stats.onStreams?.(this.stats.openStreams);
    if (!tenant) return;
    tenant.clients.delete(client);
    if (tenant.clients.size === 0) {
      tenant.subscription.unsubscribe();
      this.tenants.delete(client.tenantId);
    }
  }

  private async deliver(clients: Set<LiveClient>, subject: string, data: Uint8Array): Promise<void> {
    try {
      const decoded = await decodeTelemetry({ subject, data, receivedAt: new Date() }, this.limits, this.directory);
      if (!decoded.ok) return;
      const labels = this.directory.get(decoded.tenantId, decoded.deviceId)?.labels;
      for (const client of clients) {
        const f = client.filter;
        if (f.deviceIds.size > 0 ? !f.deviceIds.has(decoded.deviceId) : !labelsMatch(f.labels, labels)) continue;
        for (const row of decoded.rows) {
          if (f.metrics.size > 0 && !f.metrics.has(row.metric)) continue;
          client.push(toDataPoint(row));
        }
      }
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'live delivery skipped a message');
    }
  }

  stop(): void {
    for (const tenant of this.tenants.values()) tenant.subscription.unsubscribe();
    this.tenants.clear();
  }
}
