import { Pool } from '@iot-mesh/runtime';
import { JsonObject, TwinRecord } from '../domain/model';
import { optionalDate, Row } from './device-store';

/** Persistence of device twins (desired and reported documents, columns of the devices table). */
export interface TwinStore {
  getTwin(tenantId: string, id: string): Promise<TwinRecord | undefined>;
  /** The twins of those of `devices` that have a desired document (desired version above 0), with their tenant. */
  twinsWithDesired(devices: { tenantId: string; deviceId: string }[]): Promise<{ tenantId: string; twin: TwinRecord }[]>;
  /** Replaces the desired document; `expectedVersion` 0 means "any". Undefined when the device is missing; 'conflict' on a version mismatch. */
  setDesired(tenantId: string, id: string, desired: JsonObject, expectedVersion: number): Promise<TwinRecord | 'conflict' | undefined>;
  setReported(tenantId: string, id: string, reported: JsonObject): Promise<TwinRecord | undefined>;
}

const TWIN_COLUMNS = 'id, desired, desired_version, desired_update_time, reported, reported_version, reported_update_time';

function toTwin(row: Row): TwinRecord {
  return {
    deviceId: row.id,
    desired: row.desired,
    desiredVersion: Number(row.desired_version),
    desiredUpdateTime: optionalDate(row.desired_update_time),
    reported: row.reported,
    reportedVersion: Number(row.reported_version),
    reportedUpdateTime: optionalDate(row.reported_update_time),
  };
}

/** The PostgreSQL implementation (schema `device`). */
export class PgTwinStore implements TwinStore {
  constructor(private readonly pool: Pool) {}

  async getTwin(tenantId: string, id: string): Promise<TwinRecord | undefined> {
    const { rows } = await this.pool.query(`SELECT ${TWIN_COLUMNS} FROM devices WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return rows[0] ? toTwin(rows[0]) : undefined;
  }

  async twinsWithDesired(devices: { tenantId: string; deviceId: string }[]): Promise<{ tenantId: string; twin: TwinRecord }[]> {
    if (devices.length === 0) return [];
    const { rows } = await this.pool.query(
      `SELECT d.tenant_id, ${TWIN_COLUMNS.split(',').map((c) => `d.${c.trim()}`).join(', ')}
         FROM devices d JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, id) ON d.tenant_id = k.tenant_id AND d.id = k.id
        WHERE d.desired_version > 0`,
      [devices.map((d) => d.tenantId), devices.map((d) => d.deviceId)],
    );
    return rows.map((r) => ({ tenantId: r.tenant_id, twin: toTwin(r) }));
  }

  async setDesired(tenantId: string, id: string, desired: JsonObject, expectedVersion: number): Promise<TwinRecord | 'conflict' | undefined> {
    const { rows } = await this.pool.query(
      `UPDATE devices SET desired = $3::jsonb, desired_version = desired_version + 1, desired_update_time = now()
        WHERE tenant_id = $1 AND id = $2 AND ($4::bigint = 0 OR desired_version = $4::bigint)
        RETURNING ${TWIN_COLUMNS}`,
      [tenantId, id, JSON.stringify(desired), expectedVersion],
    );
    if (rows[0]) return toTwin(rows[0]);
    if (expectedVersion !== 0 && (await this.getTwin(tenantId, id))) return 'conflict';
    return undefined;
  }

  async setReported(tenantId: string, id: string, reported: JsonObject): Promise<TwinRecord | undefined> {
    const { rows } = await this.pool.query(
      `UPDATE devices SET reported = $3::jsonb, reported_version = reported_version + 1, reported_update_time = now(),
          last_seen_time = GREATEST(last_seen_time, now())
        WHERE tenant_id = $1 AND id = $2 RETURNING ${TWIN_COLUMNS}`,
      [tenantId, id, JSON.stringify(reported)],
    );
    return rows[0] ? toTwin(rows[0]) : undefined;
  }
}
