import { NatsConnection, Subscription } from 'nats';
import { ALL_TELEMETRY, Logger, parseDeviceSubject } from '@iot-mesh/runtime';
import { peekNatsJwt } from '@iot-mesh/nats-auth';
import type { SessionInfo } from '../domain/model';
import type { ConnectionEvent, Presence } from '../domain/presence';
import type { LiveConnection } from '../store/session-store';

/** Queue group shared by device service replicas, so each event is handled once. */
export const DEVICE_QUEUE = 'iot-device';

/** The part of a `$SYS.ACCOUNT.<acc>.CONNECT|DISCONNECT` event we read. */
interface ConnectEvent {
  timestamp?: string;
  server?: { id?: string };
  client?: { jwt?: string; user?: string; start?: string; stop?: string; id?: number; host?: string; name?: string; client_id?: string };
  /** DISCONNECT only: the server's reason ("Client Closed", "Authentication Revoked", …). */
  reason?: string;
}

/** The session a connect event is about; undefined when the event does not name the connection. */
function sessionOf(event: ConnectEvent): SessionInfo | undefined {
  const serverId = event.server?.id;
  const clientId = event.client?.id;
  if (!serverId || clientId === undefined) return undefined;
  const start = event.client?.start ? new Date(event.client.start) : undefined;
  return {
    serverId,
    clientId: String(clientId),
    start: start && !Number.isNaN(start.getTime()) ? start : undefined,
    remoteAddress: event.client?.host ?? '',
    // An MQTT connection's own client id, else the name a NATS client gave.
    clientName: event.client?.client_id || event.client?.name || '',
    reason: event.reason ?? '',
  };
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

/** What feeds presence. */
export interface ConnectEventsDeps {
  presence: Pick<Presence, 'connection' | 'reconcile' | 'seen'>;
  /** The service's own connection (telemetry, for last-seen times). */
  nc: NatsConnection;
  /** A system-account connection (connect events); absent without credentials. */
  system?: NatsConnection;
  log: Logger;
}

/**
 * What the NATS server itself says about device connections: the system
 * account's connect and disconnect events of every account (each tenant's
 * devices connect to the tenant's own account; a connection whose user key
 * no device holds, such as a service's, is ignored by {@link Presence}), its
 * CONNZ answers (to reconcile after a restart), and the telemetry subjects
 * (last seen). Everything goes to {@link Presence}.
 */
export class ConnectEvents {
  private readonly subs: Subscription[] = [];

  constructor(private readonly deps: ConnectEventsDeps) {}

  /** Subscribes to connect events and telemetry and reconciles; resolves once the server has the subscriptions. */
  async start(): Promise<void> {
    const { system, nc, presence, log } = this.deps;
    if (system) {
      for (const kind of ['CONNECT', 'DISCONNECT'] as const) {
        this.subs.push(
          system.subscribe(`$SYS.ACCOUNT.*.${kind}`, {
            queue: DEVICE_QUEUE,
            callback: (err, msg) => {
              if (err) return;
              try {
                this.onConnectEvent(kind, JSON.parse(new TextDecoder().decode(msg.data)) as ConnectEvent);
              } catch (e) {
                log.warn({ err: (e as Error).message }, 'undecodable connect event');
              }
            },
          }),
        );
      }
      await system.flush();
      await this.reconcile();
      // Events of connections that came and went while the system connection was away are lost: reconcile again after each reconnect.
      void (async () => {
        for await (const status of system.status()) if (status.type === 'reconnect') void this.reconcile();
      })();
    }
    this.subs.push(
      nc.subscribe(ALL_TELEMETRY, {
        queue: DEVICE_QUEUE,
        callback: (err, msg) => {
          if (err) return;
          const parsed = parseDeviceSubject(msg.subject);
          if (parsed) presence.seen(parsed.tenantId, parsed.deviceId);
        },
      }),
    );
    await nc.flush();
  }

  private onConnectEvent(kind: ConnectionEvent, event: ConnectEvent): void {
    const key = userKeyOf(event);
    if (!key) return;
    const at = new Date(event.timestamp ?? (kind === 'CONNECT' ? event.client?.start : event.client?.stop) ?? Date.now());
    this.deps.presence.connection(kind, key, at, sessionOf(event));
  }

  /**
   * Connect events missed while no replica listened (a restart) would leave
   * statuses wrong: ask every server for its live connections (of every
   * account: the system account sees them all) and set the counts from them.
   */
  async reconcile(): Promise<void> {
    const { system, presence, log } = this.deps;
    if (!system) return;
    const counts = new Map<string, number>();
    const live: LiveConnection[] = [];
    const asOf = new Date();
    try {
      const replies = await system.requestMany('$SYS.REQ.SERVER.PING.CONNZ', new TextEncoder().encode(JSON.stringify({ auth: true, limit: 1_000_000 })), { maxWait: 1000 });
      for await (const reply of replies) {
        const body = JSON.parse(new TextDecoder().decode(reply.data)) as {
          server?: { id?: string };
          data?: { server_id?: string; connections?: { cid?: number; jwt?: string; authorized_user?: string; start?: string; ip?: string; name?: string; mqtt_client?: string }[] };
        };
        const serverId = body.data?.server_id ?? body.server?.id;
        for (const conn of body.data?.connections ?? []) {
          const key = userKeyOf({ client: { jwt: conn.jwt, user: conn.authorized_user } });
          if (key) counts.set(key, (counts.get(key) ?? 0) + 1);
          if (serverId && conn.cid !== undefined) {
            const start = conn.start ? new Date(conn.start) : undefined;
            live.push({
              serverId,
              clientId: String(conn.cid),
              userKey: key ?? '',
              start: start && !Number.isNaN(start.getTime()) ? start : undefined,
              remoteAddress: conn.ip ?? '',
              clientName: conn.mqtt_client || conn.name || '',
            });
          }
        }
      }
      const changed = await presence.reconcile(counts, live, asOf);
      log.info({ connected: counts.size, changed }, 'device connection status reconciled with the NATS servers');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'reconciling device connection status failed');
    }
  }

  stop(): void {
    for (const sub of this.subs) sub.unsubscribe();
  }
}
