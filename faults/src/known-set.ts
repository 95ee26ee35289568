import crypto from 'node:crypto';
import mqtt, { MqttClient } from 'mqtt';
import { connect as connectNats, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { Client as PgClient } from 'pg';
import { deviceSubject } from '@iot-mesh/runtime';
import { encodeTelemetry } from '../../simulator/src/encoding';
import { DeviceIdentity } from '../../simulator/src/device';
import { subjectToTopic } from '../../simulator/src/links';

/** How big a known set is and how fast it goes out. */
export interface KnownSetSize {
  /** Telemetry messages each device publishes. */
  messagesPerDevice: number;
  /** Points in each message (each with its own time, so a retransmission is the same point). */
  pointsPerMessage: number;
  /** Messages per second per device (paced so a fault lands in the middle of publishing). */
  ratePerDevice: number;
}

/** What the store holds of a known set, counted by message id. */
export interface StoredCount {
  /** Distinct points of acknowledged messages found in the store. */
  storedAcked: number;
  /** Distinct points stored in all (acknowledged or not). */
  stored: number;
  /** Rows beyond the first for the same (message id, point index). */
  duplicated: number;
  /** Points of acknowledged messages missing from the store. */
  lost: number;
  /** Ids of acknowledged messages with a point missing, to find them in the stream and the logs. */
  lostMessageIds: string[];
}

/**
 * Message `n` of a known set: Protobuf, its points with their own times (so a
 * retransmission is the same point). The time is when the message is due
 * (`start + n × intervalMs`, at least 1 ms apart so every message's points are
 * distinct), as a device stamps its readings: a fixed second per message ran
 * more than the platform's 5 minutes ahead in long runs (the overload fault's
 * hundreds of messages per device), and those were dead-lettered too_far_future.
 */
function knownMessage(deviceId: string, messageId: string, n: number, start: number, intervalMs: number, pointsPerMessage: number): Buffer {
  const base = start + Math.round(n * Math.max(intervalMs, 1));
  const points = Array.from({ length: pointsPerMessage }, (_, k) => ({ metric: `m${k}`, time: new Date(base + k), numberValue: n + k / 100 }));
  return encodeTelemetry({ deviceId, messageId, points }, 'protobuf');
}

/**
 * A known set of telemetry points published by MQTT QoS 1 devices: every
 * message has an id `<device>-<run>-<n>` and explicit point times, and a
 * message counts as published only once its PUBACK arrived (mqtt.js resolves
 * `publishAsync` then, after resending across reconnects). Afterwards
 * {@link count} compares the store with what was acknowledged, point by point.
 */
export class KnownSet {
  readonly runId = crypto.randomBytes(3).toString('hex');
  /** Message ids whose PUBACK arrived, with when it arrived (ms since the epoch). */
  readonly acked = new Map<string, number>();
  /** Messages handed to the client. */
  sent = 0;
  /** Publishes that failed (the client gave up on them). */
  failed = 0;
  private readonly clients: MqttClient[] = [];
  /** Per device (in order): how often its client connected again after the first connect. */
  readonly reconnects: number[] = [];
  private readonly pending = new Set<Promise<void>>();

  /**
   * `mqttUrl`: one listener's URL, or a cluster's listeners as `host:port`
   * servers (tried in order, the first one first); `persistent`: a persistent
   * session (clean false), as devices of a clustered deployment keep theirs.
   */
  constructor(
    private readonly devices: DeviceIdentity[],
    private readonly mqttUrl: string | Array<{ host: string; port: number }>,
    readonly size: KnownSetSize,
    private readonly options: { persistent?: boolean } = {},
  ) {}

  /** Points the set holds when every message is sent. */
  get plannedPoints(): number {
    return this.devices.length * this.size.messagesPerDevice * this.size.pointsPerMessage;
  }

  /** Points of acknowledged messages. */
  get ackedPoints(): number {
    return this.acked.size * this.size.pointsPerMessage;
  }

  /** Connects every device (clean session unless persistent, reconnecting every 500 ms as a device would). */
  async connect(): Promise<void> {
    const clients = await Promise.all(
      this.devices.map(async (d, i) => {
        const options = { clientId: d.deviceId, username: d.deviceId, password: d.token, protocolVersion: 4 as const, clean: !this.options.persistent, reconnectPeriod: 500, connectTimeout: 10_000, keepalive: 30 };
        const client = typeof this.mqttUrl === 'string' ? await mqtt.connectAsync(this.mqttUrl, options) : await mqtt.connectAsync({ ...options, servers: this.mqttUrl });
        // Errors while the server is away are expected; the client reconnects by itself.
        client.on('error', () => undefined);
        this.reconnects[i] = 0;
        client.on('connect', () => this.reconnects[i]++);
        return client;
      }),
    );
    // In device order: each client publishes only on its own device's subject.
    this.clients.push(...clients);
  }

  /** Publishes the whole set, paced; resolves once every message was handed to its client (not acknowledged). */
  async publish(): Promise<void> {
    const intervalMs = 1000 / this.size.ratePerDevice;
    const start = Date.now();
    await Promise.all(
      this.devices.map(async (d, i) => {
        const client = this.clients[i];
        const topic = subjectToTopic(deviceSubject(d.tenantId, d.deviceId, 'tel'));
        for (let n = 1; n <= this.size.messagesPerDevice; n++) {
          const due = start + n * intervalMs - Date.now();
          if (due > 0) await new Promise((r) => setTimeout(r, due));
          const messageId = `${d.deviceId}-${this.runId}-${n}`;
          const payload = knownMessage(d.deviceId, messageId, n, start, intervalMs, this.size.pointsPerMessage);
          this.sent++;
          const done = client.publishAsync(topic, payload, { qos: 1 }).then(
            () => void this.acked.set(messageId, Date.now()),
            () => void this.failed++,
          );
          this.pending.add(done);
          void done.finally(() => this.pending.delete(done));
        }
      }),
    );
  }

  /** The server port each device's client is connected to now (undefined while it is not connected). */
  connectedPorts(): Array<number | undefined> {
    return this.clients.map((c) => (c.connected ? (c.stream as { remotePort?: number } | undefined)?.remotePort : undefined));
  }

  /** Waits up to `timeoutMs` for outstanding PUBACKs; what has none by then stays unacknowledged. */
  async settle(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.pending.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  }

  /** Publishes still waiting for their PUBACK. */
  get unacknowledged(): number {
    return this.sent - this.acked.size - this.failed;
  }

  /** Counts the set in PostgreSQL by message id. */
  async count(pg: PgClient, tenantId: string): Promise<StoredCount> {
    const { rows } = await pg.query<{ message_id: string; n: string; distinct_points: string }>(
      `SELECT message_id, count(*)::bigint AS n, count(DISTINCT point_index)::bigint AS distinct_points
         FROM monitoring.points WHERE tenant_id = $1 AND device_id = ANY($2) AND message_id LIKE $3 GROUP BY message_id`,
      [tenantId, this.devices.map((d) => d.deviceId), `%-${this.runId}-%`],
    );
    let stored = 0;
    let storedAcked = 0;
    let duplicated = 0;
    const complete = new Set<string>();
    for (const r of rows) {
      stored += Number(r.distinct_points);
      duplicated += Number(r.n) - Number(r.distinct_points);
      if (this.acked.has(r.message_id)) storedAcked += Number(r.distinct_points);
      if (Number(r.distinct_points) === this.size.pointsPerMessage) complete.add(r.message_id);
    }
    const lost = this.ackedPoints - storedAcked;
    const lostMessageIds = lost > 0 ? [...this.acked.keys()].filter((id) => !complete.has(id)) : [];
    return { stored, storedAcked, duplicated, lost, lostMessageIds };
  }

  /** Waits until every acknowledged point is stored, or `timeoutMs` passes; returns the last count. */
  async drained(pg: PgClient, tenantId: string, timeoutMs: number): Promise<StoredCount> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const c = await this.count(pg, tenantId);
      if (c.lost === 0 || Date.now() > until) return c;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.endAsync(true).catch(() => undefined)));
  }
}

/**
 * The same kind of known set from NATS devices, counted apart: a device
 * credential gets no JetStream acknowledgement, so NATS device publishing is
 * at-most-once (README "Message plane") and what a fault loses here is
 * reported, never promised. Nothing may be stored twice.
 */
export class NatsKnownSet {
  readonly runId = crypto.randomBytes(3).toString('hex');
  /** Messages handed to the client. */
  sent = 0;
  /** Per device (in order): reconnections to a server so far. */
  readonly reconnects: number[] = [];
  private readonly connections: NatsConnection[] = [];
  /** Per device: the message number it publishes next (the one it is at). */
  private readonly next: number[] = [];
  /** Per device: the first message number published after {@link markRecovered}. */
  private recoveredFrom?: number[];

  /** `natsUrl`: one URL, or several comma-separated (tried in that order, not shuffled). */
  constructor(
    private readonly devices: DeviceIdentity[],
    private readonly natsUrl: string,
    readonly size: KnownSetSize,
  ) {}

  async connect(): Promise<void> {
    const connections = await Promise.all(
      this.devices.map((d) =>
        connectNats({ servers: this.natsUrl.split(','), noRandomize: true, name: d.deviceId, authenticator: d.token ? deviceUserAuthenticator({ token: d.token, seed: d.seed }) : undefined, maxReconnectAttempts: -1, reconnectTimeWait: 500 }),
      ),
    );
    this.connections.push(...connections);
    connections.forEach((nc, i) => {
      this.reconnects[i] = 0;
      void (async () => {
        for await (const s of nc.status()) if (s.type === 'reconnect') this.reconnects[i]++;
      })();
    });
  }

  /** Whether {@link markRecovered} was called. */
  get recovered(): boolean {
    return this.recoveredFrom !== undefined;
  }

  /** The server port each device's connection is on now. */
  connectedPorts(): Array<number | undefined> {
    return this.connections.map((nc) => (nc.isClosed() ? undefined : nc.info?.port));
  }

  /**
   * Marks the platform recovered: what each device publishes from now on
   * must be stored ({@link countAfterRecovery}). Returns how many messages
   * are still to come (0: the set was over before the recovery).
   */
  markRecovered(): number {
    this.recoveredFrom = this.devices.map((_, i) => this.next[i] ?? 1);
    return this.recoveredFrom.reduce((sum, from) => sum + Math.max(0, this.size.messagesPerDevice - from + 1), 0);
  }

  /** Messages published after {@link markRecovered} and how many of them are stored (by message id). */
  async countAfterRecovery(pg: PgClient, tenantId: string): Promise<{ sent: number; stored: number }> {
    if (!this.recoveredFrom) throw new Error('countAfterRecovery: markRecovered was not called');
    const { rows } = await pg.query<{ message_id: string }>(
      `SELECT DISTINCT message_id FROM monitoring.points WHERE tenant_id = $1 AND device_id = ANY($2) AND message_id LIKE $3`,
      [tenantId, this.devices.map((d) => d.deviceId), `%-${this.runId}-%`],
    );
    const stored = new Set(rows.map((r) => r.message_id));
    let sent = 0;
    let found = 0;
    this.devices.forEach((d, i) => {
      for (let n = this.recoveredFrom![i]; n <= Math.min(this.next[i] - 1, this.size.messagesPerDevice); n++) {
        sent++;
        if (stored.has(`${d.deviceId}-${this.runId}-${n}`)) found++;
      }
    });
    return { sent, stored: found };
  }

  /** Publishes the whole set, paced as {@link KnownSet.publish}. */
  async publish(): Promise<void> {
    const intervalMs = 1000 / this.size.ratePerDevice;
    const start = Date.now();
    await Promise.all(
      this.devices.map(async (d, i) => {
        const nc = this.connections[i];
        const subject = deviceSubject(d.tenantId, d.deviceId, 'tel');
        for (let n = 1; n <= this.size.messagesPerDevice; n++) {
          const due = start + n * intervalMs - Date.now();
          if (due > 0) await new Promise((r) => setTimeout(r, due));
          this.next[i] = n + 1;
          this.sent++;
          try {
            nc.publish(subject, knownMessage(d.deviceId, `${d.deviceId}-${this.runId}-${n}`, n, start, intervalMs, this.size.pointsPerMessage));
          } catch {
            // A closed or draining connection refuses the publish: sent, not delivered.
          }
        }
      }),
    );
    await Promise.all(this.connections.map((nc) => nc.flush().catch(() => undefined)));
  }

  /** Distinct points stored and rows stored twice. */
  async count(pg: PgClient, tenantId: string): Promise<{ stored: number; duplicated: number }> {
    const { rows } = await pg.query<{ n: string; distinct_points: string }>(
      `SELECT count(*)::bigint AS n, count(DISTINCT (message_id, point_index))::bigint AS distinct_points
         FROM monitoring.points WHERE tenant_id = $1 AND device_id = ANY($2) AND message_id LIKE $3`,
      [tenantId, this.devices.map((d) => d.deviceId), `%-${this.runId}-%`],
    );
    return { stored: Number(rows[0].distinct_points), duplicated: Number(rows[0].n) - Number(rows[0].distinct_points) };
  }

  async close(): Promise<void> {
    await Promise.all(this.connections.map((nc) => nc.close().catch(() => undefined)));
  }
}
