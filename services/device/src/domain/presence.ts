import { Logger } from '@iot-mesh/runtime';
import type { DeviceStore } from '../store/device-store';
import type { LiveConnection, SessionEvent, SessionStore } from '../store/session-store';
import { DeviceSessionRecord, SessionInfo, UNREPORTED_DISCONNECT } from './model';
import type { DeviceChanges } from './devices';
import type { Twins } from './twins';

/** How often coalesced last-seen times are written. */
const LAST_SEEN_FLUSH_MS = 1000;
/** A device's last-seen time is written at most this often. */
const LAST_SEEN_RESOLUTION_MS = 5000;
/** Most connect events taken from the queue at once (written a round of statements at a time). */
const CONNECTION_BATCH = 1000;

/** A connection opened or closed, as the NATS server reported it. */
export type ConnectionEvent = 'CONNECT' | 'DISCONNECT';

/** A connect event waiting to be applied. */
interface QueuedConnection {
  kind: ConnectionEvent;
  userKey: string;
  at: Date;
  session?: SessionInfo;
}

/**
 * `events` as rounds that keep each key's events in arrival order: an event
 * goes into the first round after its key's (and its session's) previous
 * one, so no round names a key or a session twice and each round is one
 * statement per table.
 */
export function connectionRounds<T extends { userKey: string; session?: { serverId: string; clientId: string } }>(events: T[]): T[][] {
  const rounds: T[][] = [];
  const next = new Map<string, number>();
  for (const event of events) {
    const names = [`key:${event.userKey}`, ...(event.session ? [`session:${event.session.serverId}:${event.session.clientId}`] : [])];
    const round = Math.max(...names.map((n) => next.get(n) ?? 0));
    (rounds[round] ??= []).push(event);
    for (const n of names) next.set(n, round + 1);
  }
  return rounds;
}

/** What presence is built from. */
export interface PresenceDeps {
  store: Pick<DeviceStore, 'applyConnections' | 'reconcileConnections' | 'touchLastSeen'>;
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
 *
 * Connect events are queued and applied by one writer, many per statement:
 * a fleet connecting at once (10,000 devices) is a few statements on one
 * pool client, not a query per event racing the API's calls for the pool
 * (which made them wait past the pool's timeout, lost events and took the
 * service's PostgreSQL check down).
 */
export class Presence {
  private readonly queue: QueuedConnection[] = [];
  private draining?: Promise<void>;
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
    this.queue.push({ kind, userKey, at, session });
    this.drainSoon();
  }

  /** Starts the writer unless it runs; once it ends, again for what came in meanwhile (its last check of the queue and its end are apart). */
  private drainSoon(): void {
    if (this.draining) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      if (this.queue.length > 0) this.drainSoon();
    });
  }

  /** Resolves once every connect event received so far is applied (or failed and was logged). */
  async settled(): Promise<void> {
    while (this.draining) await this.draining;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, CONNECTION_BATCH);
      for (const round of connectionRounds(batch)) {
        try {
          await this.apply(round);
        } catch (err) {
          // Lost like a missed event: the reconcile after a reconnect or restart repairs the counts.
          this.deps.log.warn({ err: (err as Error).message, events: round.length }, 'applying connect events failed');
        }
      }
    }
  }

  /** Applies events naming each key and session at most once. */
  private async apply(events: QueuedConnection[]): Promise<void> {
    const { store, sessions, changes, twins, log } = this.deps;
    const applied = await store.applyConnections(
      events.map((e) => ({ publicKey: e.userKey, delta: e.kind === 'CONNECT' ? 1 : -1, at: e.at, reason: e.session?.reason })),
    );
    const opened: SessionEvent[] = [];
    const closed: SessionEvent[] = [];
    const closedByConnection: Pick<SessionEvent, 'info' | 'at'>[] = [];
    for (const e of events) {
      const change = applied.get(e.userKey);
      if (!e.session) continue;
      const { at, session: info } = e;
      // A rotated or revoked credential's connection: its session is closed all the same.
      if (!change) {
        if (e.kind === 'DISCONNECT') closedByConnection.push({ info, at });
      } else (e.kind === 'CONNECT' ? opened : closed).push({ tenantId: change.device.tenantId, deviceId: change.device.id, info, at });
    }
    await sessions.opened(opened);
    await sessions.closed(closed);
    await sessions.closedByConnection(closedByConnection);
    await Promise.all([...applied.values()].map((change) => changes.connection(change)));
    const connected = events.flatMap((e) => {
      const change = e.kind === 'CONNECT' ? applied.get(e.userKey) : undefined;
      return change ? [{ tenantId: change.device.tenantId, deviceId: change.device.id }] : [];
    });
    if (connected.length > 0) void twins.connected(connected).catch((err: Error) => log.warn({ err: err.message, devices: connected.length }, 'delivering desired state on connect failed'));
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
    await this.settled();
  }
}
