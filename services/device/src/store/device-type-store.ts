import { errors, PG_ERROR, Pool } from '@iot-mesh/runtime';
import { DeviceTypeInput, DeviceTypeRecord } from '../domain/model';
import { Row } from './device-store';

/** Persistence of device types. */
export interface DeviceTypeStore {
  /** ALREADY_EXISTS when the name is taken in the tenant. */
  insert(tenantId: string, id: string, input: DeviceTypeInput): Promise<DeviceTypeRecord>;
  /** By id (a UUID) or by name. */
  get(tenantId: string, idOrName: string): Promise<DeviceTypeRecord | undefined>;
  /** Replaces every field but id and name. */
  replace(tenantId: string, id: string, input: DeviceTypeInput): Promise<DeviceTypeRecord | undefined>;
  /** FAILED_PRECONDITION while devices, keys or groups use it. */
  delete(tenantId: string, id: string): Promise<boolean>;
  list(tenantId: string, afterSeq: string | undefined, limit: number): Promise<DeviceTypeRecord[]>;
  /** Types by id, of any tenant (for the device directory). */
  getMany(ids: string[]): Promise<DeviceTypeRecord[]>;
}

const COLUMNS = `tenant_id, id, seq, name, display_name, description, metrics, commands, desired_schema, reported_schema,
  default_alert_rules, firmware_version, unknown_metric_policy, create_time, update_time`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a string PostgreSQL accepts as a uuid (anything else cannot be an id). */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

function toDeviceType(row: Row): DeviceTypeRecord {
  return {
    tenantId: row.tenant_id,
    id: row.id,
    seq: String(row.seq),
    name: row.name,
    displayName: row.display_name,
    description: row.description,
    metrics: row.metrics,
    commands: row.commands,
    desiredSchema: row.desired_schema ?? undefined,
    reportedSchema: row.reported_schema ?? undefined,
    defaultAlertRules: row.default_alert_rules,
    firmwareVersion: row.firmware_version,
    unknownMetricPolicy: row.unknown_metric_policy,
    createTime: row.create_time,
    updateTime: row.update_time,
  };
}

function values(input: DeviceTypeInput): unknown[] {
  return [
    input.displayName,
    input.description,
    JSON.stringify(input.metrics),
    JSON.stringify(input.commands),
    input.desiredSchema ? JSON.stringify(input.desiredSchema) : null,
    input.reportedSchema ? JSON.stringify(input.reportedSchema) : null,
    JSON.stringify(input.defaultAlertRules),
    input.firmwareVersion,
    input.unknownMetricPolicy,
  ];
}

/** The PostgreSQL implementation (schema `device`). */
export class PgDeviceTypeStore implements DeviceTypeStore {
  constructor(private readonly pool: Pool) {}

  async insert(tenantId: string, id: string, input: DeviceTypeInput): Promise<DeviceTypeRecord> {
    const { rows } = await this.pool
      .query(
        `INSERT INTO device_types (tenant_id, id, name, display_name, description, metrics, commands, desired_schema, reported_schema,
           default_alert_rules, firmware_version, unknown_metric_policy)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING ${COLUMNS}`,
        [tenantId, id, input.name, ...values(input)],
      )
      .catch((err: { code?: string }) => {
        if (err.code === PG_ERROR.uniqueViolation) throw errors.alreadyExists(`a device type named ${JSON.stringify(input.name)} already exists`);
        throw err;
      });
    return toDeviceType(rows[0]);
  }

  async get(tenantId: string, idOrName: string): Promise<DeviceTypeRecord | undefined> {
    const { rows } = isUuid(idOrName)
      ? await this.pool.query(`SELECT ${COLUMNS} FROM device_types WHERE tenant_id = $1 AND id = $2::uuid`, [tenantId, idOrName])
      : await this.pool.query(`SELECT ${COLUMNS} FROM device_types WHERE tenant_id = $1 AND name = $2`, [tenantId, idOrName]);
    return rows[0] ? toDeviceType(rows[0]) : undefined;
  }

  async replace(tenantId: string, id: string, input: DeviceTypeInput): Promise<DeviceTypeRecord | undefined> {
    const { rows } = await this.pool.query(
      `UPDATE device_types SET display_name = $3, description = $4, metrics = $5, commands = $6, desired_schema = $7, reported_schema = $8,
         default_alert_rules = $9, firmware_version = $10, unknown_metric_policy = $11, update_time = now()
       WHERE tenant_id = $1 AND id = $2::uuid RETURNING ${COLUMNS}`,
      [tenantId, id, ...values(input)],
    );
    return rows[0] ? toDeviceType(rows[0]) : undefined;
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(`DELETE FROM device_types WHERE tenant_id = $1 AND id = $2::uuid`, [tenantId, id]).catch((err: { code?: string }) => {
      if (err.code === PG_ERROR.foreignKeyViolation) throw errors.failedPrecondition('the device type is in use by devices, provisioning keys or groups');
      throw err;
    });
    return (rowCount ?? 0) > 0;
  }

  async list(tenantId: string, afterSeq: string | undefined, limit: number): Promise<DeviceTypeRecord[]> {
    const { rows } = await this.pool.query(`SELECT ${COLUMNS} FROM device_types WHERE tenant_id = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3`, [
      tenantId,
      afterSeq ?? '0',
      limit,
    ]);
    return rows.map(toDeviceType);
  }

  async getMany(ids: string[]): Promise<DeviceTypeRecord[]> {
    if (ids.length === 0) return [];
    const { rows } = await this.pool.query(`SELECT ${COLUMNS} FROM device_types WHERE id = ANY($1::uuid[])`, [ids]);
    return rows.map(toDeviceType);
  }
}
