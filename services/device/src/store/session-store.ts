import { Pool } from '@iot-mesh/runtime';
import { DeviceSessionRecord, SessionInfo } from '../domain/model';
import { optionalDate, Row } from './device-store';

/** A connection a server reports as live (CONNZ). */
export interface LiveConnection extends Omit<SessionInfo, 'reason'> {
  /** The NATS user public key it authenticated with. */
  userKey: string;
}

/** A connect or disconnect event of a device's connection. */
export interface SessionEvent {
  tenantId: string;
  deviceId: string;
  info: SessionInfo;
  at: Date;
}

/** Persistence of device sessions (connection history). Each write takes many events (one statement), at most one per session. */
export interface SessionStore {
  /** Records the start of sessions (once per server and client id). */
  opened(events: SessionEvent[]): Promise<void>;
  /** Records the end of sessions, creating each whose start went unreported. */
  closed(events: SessionEvent[]): Promise<void>;
  /** Records the end of known sessions whose credential no device holds any more (rotated or revoked). */
  closedByConnection(events: Pick<SessionEvent, 'info' | 'at'>[]): Promise<void>;
  /**
   * Makes the open sessions what the servers report: closes every session
   * opened before `asOf` and still open that is not among `live`, with
   * `reason`, and records live connections of devices (by credential key)
   * whose connect event was missed.
   */
  reconcile(live: LiveConnection[], asOf: Date, reason: string): Promise<void>;
  /** Sessions of a device, newest first, before keyset position `beforeSeq`. */
  list(tenantId: string, deviceId: string, beforeSeq: string | undefined, limit: number): Promise<DeviceSessionRecord[]>;
}

function toSession(row: Row): DeviceSessionRecord {
  return {
    deviceId: row.device_id,
    serverId: row.server_id,
    clientId: String(row.client_id),
    connectTime: optionalDate(row.connect_time),
    disconnectTime: optionalDate(row.disconnect_time),
    disconnectReason: row.disconnect_reason,
    remoteAddress: row.remote_address,
    clientName: row.client_name,
    seq: String(row.seq),
  };
}

/** The PostgreSQL implementation (schema `device`). */
export class PgSessionStore implements SessionStore {
  constructor(private readonly pool: Pool) {}

  async opened(events: SessionEvent[]): Promise<void> {
    if (events.length === 0) return;
    // Joined with the devices so a device deleted meanwhile drops its own row, not the whole batch (foreign key).
    await this.pool.query(
      `INSERT INTO device_sessions (tenant_id, device_id, server_id, client_id, connect_time, remote_address, client_name)
       SELECT e.tenant_id, e.device_id, e.server_id, e.client_id, e.connect_time, e.remote_address, e.client_name
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::text[], $7::text[])
              AS e(tenant_id, device_id, server_id, client_id, connect_time, remote_address, client_name)
         JOIN devices d ON d.tenant_id = e.tenant_id AND d.id = e.device_id
       ON CONFLICT (server_id, client_id) DO UPDATE SET connect_time = COALESCE(device_sessions.connect_time, EXCLUDED.connect_time)`,
      [
        events.map((e) => e.tenantId),
        events.map((e) => e.deviceId),
        events.map((e) => e.info.serverId),
        events.map((e) => e.info.clientId),
        events.map((e) => e.info.start ?? e.at),
        events.map((e) => e.info.remoteAddress),
        events.map((e) => e.info.clientName),
      ],
    );
  }

  async closed(events: SessionEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.pool.query(
      `INSERT INTO device_sessions (tenant_id, device_id, server_id, client_id, connect_time, disconnect_time, disconnect_reason, remote_address, client_name)
       SELECT e.tenant_id, e.device_id, e.server_id, e.client_id, e.connect_time, e.disconnect_time, e.disconnect_reason, e.remote_address, e.client_name
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[], $9::text[])
              AS e(tenant_id, device_id, server_id, client_id, connect_time, disconnect_time, disconnect_reason, remote_address, client_name)
         JOIN devices d ON d.tenant_id = e.tenant_id AND d.id = e.device_id
       ON CONFLICT (server_id, client_id) DO UPDATE SET disconnect_time = EXCLUDED.disconnect_time, disconnect_reason = EXCLUDED.disconnect_reason,
         connect_time = COALESCE(device_sessions.connect_time, EXCLUDED.connect_time)`,
      [
        events.map((e) => e.tenantId),
        events.map((e) => e.deviceId),
        events.map((e) => e.info.serverId),
        events.map((e) => e.info.clientId),
        events.map((e) => e.info.start ?? null),
        events.map((e) => e.at),
        events.map((e) => e.info.reason),
        events.map((e) => e.info.remoteAddress),
        events.map((e) => e.info.clientName),
      ],
    );
  }

  async closedByConnection(events: Pick<SessionEvent, 'info' | 'at'>[]): Promise<void> {
    if (events.length === 0) return;
    await this.pool.query(
      `UPDATE device_sessions s SET disconnect_time = e.at, disconnect_reason = e.reason
         FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[]) AS e(server_id, client_id, at, reason)
        WHERE s.server_id = e.server_id AND s.client_id = e.client_id AND s.disconnect_time IS NULL`,
      [events.map((e) => e.info.serverId), events.map((e) => e.info.clientId), events.map((e) => e.at), events.map((e) => e.info.reason)],
    );
  }

  async reconcile(live: LiveConnection[], asOf: Date, reason: string): Promise<void> {
    const servers = live.map((l) => l.serverId);
    const clients = live.map((l) => l.clientId);
    await this.pool.query(
      `UPDATE device_sessions s SET disconnect_time = $3, disconnect_reason = $4
        WHERE s.disconnect_time IS NULL AND (s.connect_time IS NULL OR s.connect_time < $3)
          AND NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::bigint[]) AS l(server_id, client_id) WHERE l.server_id = s.server_id AND l.client_id = s.client_id)`,
      [servers, clients, asOf, reason],
    );
    if (live.length === 0) return;
    await this.pool.query(
      `INSERT INTO device_sessions (tenant_id, device_id, server_id, client_id, connect_time, remote_address, client_name)
       SELECT d.tenant_id, d.id, l.server_id, l.client_id, l.start, l.remote_address, l.client_name
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[]) AS l(server_id, client_id, user_key, start, remote_address, client_name)
         JOIN devices d ON d.credential_key = l.user_key
       ON CONFLICT (server_id, client_id) DO NOTHING`,
      [servers, clients, live.map((l) => l.userKey), live.map((l) => l.start ?? null), live.map((l) => l.remoteAddress), live.map((l) => l.clientName)],
    );
  }

  async list(tenantId: string, deviceId: string, beforeSeq: string | undefined, limit: number): Promise<DeviceSessionRecord[]> {
    const { rows } = await this.pool.query(
      `SELECT seq, device_id, server_id, client_id, connect_time, disconnect_time, disconnect_reason, remote_address, client_name FROM device_sessions
        WHERE tenant_id = $1 AND device_id = $2 AND ($3::bigint IS NULL OR seq < $3::bigint) ORDER BY seq DESC LIMIT $4`,
      [tenantId, deviceId, beforeSeq ?? null, limit],
    );
    return rows.map(toSession);
  }
}
