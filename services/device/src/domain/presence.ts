import { Logger } from '@iot-mesh/runtime';
import type { DeviceStore } from '../store/device-store';
import type { LiveConnection, SessionStore } from '../store/session-store';
import { DeviceSessionRecord, SessionInfo, UNREPORTED_DISCONNECT } from './model';
import type { DeviceChanges } from './devices';
import type { Twins } from './twins';

/** How often coalesced last-seen times are written. */
const LAST_SEEN_FLUSH_MS = 1000;
/** A device's last-seen time is written at most this often. */
const LAST_SEEN_RESOLUTION_MS = 5000;

/** A connection opened or closed, as the NATS server reported it. */
export type ConnectionEvent = 'CONNECT' | 'DISCONNECT';

/** What presence is built from. */
export interface PresenceDeps {
  store: Pick<DeviceStore, 'connected' | 'disconnected' | 'reconcileConnections' | 'touchLastSeen'>;
  changes: DeviceChanges;
  twins: Pick<Twins, 'connected'>;
  /** The connection history. */
  sessions: SessionStore;
  /** Where failures of work nobody waits for are reported. */
  log: Logger;
}

/**
 * Online/offline and last connect/disconnect/seen of devices, from what the
 * NATS server itself reports (fed by `events/connect-events.ts`): connection
 * counts per credential key, and last-seen times coalesced from telemetry.
 */
export class Presence {
  private readonly chains = new Map<string, Promise<void>>();
  private readonly pendingSeen = new Map<string, Date>();
  private readonly lastWritten = new Map<string, number>();
  private flushTimer?: NodeJS.Timeout;
  private flushing?: Promise<void>;

  constructor(private readonly deps: PresenceDeps) {}

  /** Starts writing last-seen times. */
  start(): void {
    this.flushTimer = setInterval(() => void this.flushLastSeen(), LAST_SEEN_FLUSH_MS);
    this.flushTimer.unref();
  }

  /** A connection of the credential `userKey` opened or closed at `at`; one key's events are applied in arrival order. */
  connection(kind: ConnectionEvent, userKey: string, at: Date, session?: SessionInfo): void {
    const previous = this.chains.get(userKey) ?? Promise.resolve();
    const next = previous.then(() => this.apply(kind, userKey, at, session)).catch((err: Error) => this.deps.log.warn({ err: err.message }, 'applying a connect event failed'));
    this.chains.set(userKey, next);
    void next.then(() => {
      if (this.chains.get(userKey) === next) this.chains.delete(userKey);
    });
  }

  private async apply(kind: ConnectionEvent, userKey: string, at: Date, session?: SessionInfo): Promise<void> {
    const change = kind === 'CONNECT' ? await this.deps.store.connected(userKey, at) : await this.deps.store.disconnected(userKey, at, session?.reason);
    if (session) {
      const { sessions } = this.deps;
      if (!change) {
        // A rotated or revoked credential's connection: its session is closed all the same.
        if (kind === 'DISCONNECT') await sessions.closedByConnection(session, at);
      } else if (kind === 'CONNECT') await sessions.opened(change.device.tenantId, change.device.id, session, at);
      else await sessions.closed(change.device.tenantId, change.device.id, session, at);
    }
    if (!change) return;
    await this.deps.changes.connection(change);
    if (kind === 'CONNECT') {
      const { tenantId, id } = change.device;
      void this.deps.twins.connected(tenantId, id).catch((err: Error) => this.deps.log.warn({ err: err.message, deviceId: id }, 'delivering desired state on connect failed'));
    }
  }

  /**
   * Sets every device's connection count to what the NATS servers report
   * (credential key → live connections), repairing events missed while no
   * replica listened. Returns how many devices changed.
   */
  async reconcile(counts: Map<string, number>, live?: LiveConnection[], asOf = new Date()): Promise<number> {
    const changes = await this.deps.store.reconcileConnections(counts);
    // Sessions no server holds any more ended without a disconnect event (a server restarted or was cut off);
    // ones opened after the servers were asked are not in their answers and stay open.
    if (live) await this.deps.sessions.reconcile(live, asOf, UNREPORTED_DISCONNECT);
    for (const change of changes) await this.deps.changes.connection(change);
    return changes.length;
  }

  /** Sessions of a device, newest first (the device is looked up by the caller). */
  async sessions(tenantId: string, deviceId: string, size: number, before: string | undefined): Promise<{ sessions: DeviceSessionRecord[]; nextBefore?: string }> {
    const rows = await this.deps.sessions.list(tenantId, deviceId, before, size + 1);
    const sessions = rows.slice(0, size);
    return { sessions, nextBefore: rows.length > size ? sessions[sessions.length - 1].seq : undefined };
  }

  /** The device sent telemetry now (its last-seen and last-data times are written soon, coalesced). */
  seen(tenantId: string, deviceId: string): void {
    this.pendingSeen.set(`${tenantId}.${deviceId}`, new Date());
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
        await Promise.all(touched.map((t) => this.deps.changes.invalidate(t)));
      } catch (err) {
        this.deps.log.warn({ err: (err as Error).message }, 'writing last-seen times failed');
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  /** Writes what is pending and waits for connect events in flight. */
  async stop(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    await this.flushLastSeen();
    await Promise.all(this.chains.values());
  }
}
