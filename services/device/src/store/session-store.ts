import { Pool } from '@iot-mesh/runtime';
import { DeviceSessionRecord, SessionInfo } from '../domain/model';
import { optionalDate, Row } from './device-store';

/** A connection a server reports as live (CONNZ). */
export interface LiveConnection extends Omit<SessionInfo, 'reason'> {
  /** The NATS user public key it authenticated with. */
  userKey: string;
}

/** Persistence of device sessions (connection history). */
export interface SessionStore {
  /** Records the start of a session (once per server and client id). */
  opened(tenantId: string, deviceId: string, info: SessionInfo, at: Date): Promise<void>;
  /** Records the end of a session, creating it when its start went unreported. */
  closed(tenantId: string, deviceId: string, info: SessionInfo, at: Date): Promise<void>;
  /** Records the end of a known session whose credential no device holds any more (rotated or revoked). */
  closedByConnection(info: SessionInfo, at: Date): Promise<void>;
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

  async opened(tenantId: string, deviceId: string, info: SessionInfo, at: Date): Promise<void> {
    await this.pool.query(
      `INSERT INTO device_sessions (tenant_id, device_id, server_id, client_id, connect_time, remote_address, client_name)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (server_id, client_id) DO UPDATE SET connect_time = COALESCE(device_sessions.connect_time, EXCLUDED.connect_time)`,
      [tenantId, deviceId, info.serverId, info.clientId, info.start ?? at, info.remoteAddress, info.clientName],
    );
  }

  async closed(tenantId: string, deviceId: string, info: SessionInfo, at: Date): Promise<void> {
    await this.pool.query(
      `INSERT INTO device_sessions (tenant_id, device_id, server_id, client_id, connect_time, disconnect_time, disconnect_reason, remote_address, client_name)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (server_id, client_id) DO UPDATE SET disconnect_time = EXCLUDED.disconnect_time, disconnect_reason = EXCLUDED.disconnect_reason,
         connect_time = COALESCE(device_sessions.connect_time, EXCLUDED.connect_time)`,
      [tenantId, deviceId, info.serverId, info.clientId, info.start ?? null, at, info.reason, info.remoteAddress, info.clientName],
    );
  }

  async closedByConnection(info: SessionInfo, at: Date): Promise<void> {
    await this.pool.query(
      `UPDATE device_sessions SET disconnect_time = $3, disconnect_reason = $4 WHERE server_id = $1 AND client_id = $2 AND disconnect_time IS NULL`,
      [info.serverId, info.clientId, at, info.reason],
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
