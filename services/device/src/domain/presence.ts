import { NatsConnection, Subscription } from 'nats';
import { ALL_TELEMETRY, Logger, parseDeviceSubject } from '@iot-mesh/runtime';
import { DeviceEvents } from './nats/device-events';
import { peekNatsJwt } from '@iot-mesh/nats-auth';
import { DeviceCache } from './store/device-cache';
import { DeviceStore } from './store/device-store';
import { TwinService } from './twin';

/** How often coalesced last-seen times are written. */
const LAST_SEEN_FLUSH_MS = 1000;
/** A device's last-seen time is written at most this often. */
const LAST_SEEN_RESOLUTION_MS = 5000;

/** Queue group shared by device service replicas, so each event is handled once. */
export const DEVICE_QUEUE = 'iot-device';

/** The part of a `$SYS.ACCOUNT.<acc>.CONNECT|DISCONNECT` event we read. */
interface ConnectEvent {
  timestamp?: string;
  client?: { jwt?: string; user?: string; start?: string; stop?: string };
}

/** The NATS user public key a connect event is about; the JWT itself is never kept or logged. */
function userKeyOf(event: ConnectEvent): string | undefined {
  const jwt = event.client?.jwt;
  if (jwt) {
    try {
      return peekNatsJwt(jwt).sub;
    } catch {
      return undefined;
    }
  }
  const user = event.client?.user;
  return user && /^U[A-Z2-7]{55}$/.test(user) ? user : undefined;
}

/**
 * Online/offline and last connect/disconnect/seen, from what the NATS server
 * itself reports: the system account's connect and disconnect events of the
 * application account, and the telemetry subjects (last seen, coalesced).
 */
export class Presence {
  private readonly subs: Subscription[] = [];
  private readonly chains = new Map<string, Promise<void>>();
  private readonly pendingSeen = new Map<string, Date>();
  private readonly lastWritten = new Map<string, number>();
  private flushTimer?: NodeJS.Timeout;
  private flushing?: Promise<void>;

  constructor(
    private readonly deps: {
      store: DeviceStore;
      cache: DeviceCache;
      events: DeviceEvents;
      twin: TwinService;
      /** The service's own connection (telemetry). */
      nc: NatsConnection;
      /** A system-account connection (connect events); absent without credentials. */
      system?: NatsConnection;
      accountId?: string;
      log: Logger;
    },
  ) {}

  /** Subscribes to connect events and telemetry; resolves once the server has the subscriptions. */
  async start(): Promise<void> {
    const { system, accountId, nc } = this.deps;
    if (system && accountId) {
      for (const kind of ['CONNECT', 'DISCONNECT'] as const) {
        this.subs.push(
          system.subscribe(`$SYS.ACCOUNT.${accountId}.${kind}`, {
            queue: DEVICE_QUEUE,
            callback: (err, msg) => {
              if (err) return;
              try {
                this.onConnectEvent(kind, JSON.parse(new TextDecoder().decode(msg.data)) as ConnectEvent);
              } catch (e) {
                this.deps.log.warn({ err: (e as Error).message }, 'undecodable connect event');
              }
            },
          }),
        );
      }
      await system.flush();
      await this.reconcile();
    }
    this.subs.push(
      nc.subscribe(ALL_TELEMETRY, {
        queue: DEVICE_QUEUE,
        callback: (err, msg) => {
          if (err) return;
          const parsed = parseDeviceSubject(msg.subject);
          if (parsed) this.pendingSeen.set(`${parsed.tenantId}.${parsed.deviceId}`, new Date());
        },
      }),
    );
    await nc.flush();
    this.flushTimer = setInterval(() => void this.flushLastSeen(), LAST_SEEN_FLUSH_MS);
    this.flushTimer.unref();
  }

  /**
   * Connect events missed while no replica listened (a restart) would leave
   * statuses wrong: ask every server for the account's live connections and
   * set the counts from them.
   */
  async reconcile(): Promise<void> {
    const { system, accountId, store, cache, events, log } = this.deps;
    if (!system || !accountId) return;
    const counts = new Map<string, number>();
    try {
      const replies = await system.requestMany('$SYS.REQ.SERVER.PING.CONNZ', new TextEncoder().encode(JSON.stringify({ acc: accountId, auth: true, limit: 1_000_000 })), { maxWait: 1000 });
      for await (const reply of replies) {
        const body = JSON.parse(new TextDecoder().decode(reply.data)) as { data?: { connections?: { jwt?: string; authorized_user?: string }[] } };
        for (const conn of body.data?.connections ?? []) {
          const key = userKeyOf({ client: { jwt: conn.jwt, user: conn.authorized_user } });
          if (key) counts.set(key, (counts.get(key) ?? 0) + 1);
        }
      }
      const changes = await store.reconcileConnections(counts);
      for (const change of changes) {
        await cache.invalidate(change.device.tenantId, change.device.id, change.device.version);
        if (change.changed) events.publish('status_changed', [change.device]);
      }
      log.info({ connected: counts.size, changed: changes.length }, 'device connection status reconciled with the NATS servers');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'reconciling device connection status failed');
    }
  }

  private onConnectEvent(kind: 'CONNECT' | 'DISCONNECT', event: ConnectEvent): void {
    const key = userKeyOf(event);
    if (!key) return;
    const at = new Date(event.timestamp ?? (kind === 'CONNECT' ? event.client?.start : event.client?.stop) ?? Date.now());
    // One device's events are applied in the order they arrived.
    const previous = this.chains.get(key) ?? Promise.resolve();
    const next = previous.then(() => this.applyConnectEvent(kind, key, at)).catch((err: Error) => this.deps.log.warn({ err: err.message }, 'applying a connect event failed'));
    this.chains.set(key, next);
    void next.then(() => {
      if (this.chains.get(key) === next) this.chains.delete(key);
    });
  }

  private async applyConnectEvent(kind: 'CONNECT' | 'DISCONNECT', key: string, at: Date): Promise<void> {
    const change = kind === 'CONNECT' ? await this.deps.store.connected(key, at) : await this.deps.store.disconnected(key, at);
    if (!change) return;
    const { device } = change;
    await this.deps.cache.invalidate(device.tenantId, device.id, device.version);
    if (change.changed) this.deps.events.publish('status_changed', [device]);
    if (kind === 'CONNECT') void this.deps.twin.deliverOnConnect(device.tenantId, device.id);
  }

  /** Writes the last-seen times that are due. */
  flushLastSeen(): Promise<void> {
    if (this.flushing) return this.flushing;
    const now = Date.now();
    const due: { tenantId: string; id: string; at: Date }[] = [];
    for (const [key, at] of this.pendingSeen) {
      if (now - (this.lastWritten.get(key) ?? 0) < LAST_SEEN_RESOLUTION_MS) continue;
      const dot = key.indexOf('.');
      due.push({ tenantId: key.slice(0, dot), id: key.slice(dot + 1), at });
      this.pendingSeen.delete(key);
      this.lastWritten.set(key, now);
    }
    if (due.length === 0) return Promise.resolve();
    this.flushing = (async () => {
      try {
        const touched = await this.deps.store.touchLastSeen(due);
        await Promise.all(touched.map((t) => this.deps.cache.invalidate(t.tenantId, t.id, t.version)));
      } catch (err) {
        this.deps.log.warn({ err: (err as Error).message }, 'writing last-seen times failed');
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    for (const sub of this.subs) sub.unsubscribe();
    await this.flushLastSeen();
    await Promise.all(this.chains.values());
  }
}
