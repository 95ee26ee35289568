import { errors, PG_ERROR, Pool } from '@iot-mesh/runtime';
import { GroupRecord } from '../domain/model';
import { Row } from './device-store';
import { isUuid } from './device-type-store';

/** The fields of a group a caller sets. */
export type GroupInput = Pick<GroupRecord, 'name' | 'description' | 'matchLabels' | 'deviceTypeId'>;

/** Persistence of device groups. */
export interface GroupStore {
  /** ALREADY_EXISTS when the name is taken in the tenant. */
  insert(tenantId: string, id: string, input: GroupInput): Promise<GroupRecord>;
  get(tenantId: string, id: string): Promise<GroupRecord | undefined>;
  replace(tenantId: string, id: string, input: GroupInput): Promise<GroupRecord | undefined>;
  delete(tenantId: string, id: string): Promise<boolean>;
  list(tenantId: string, afterSeq: string | undefined, limit: number): Promise<GroupRecord[]>;
  /** Every group of every tenant, in batches (the group directory's resync). */
  scanAll(batch: number): AsyncIterable<GroupRecord[]>;
}

const COLUMNS = 'tenant_id, id, seq, name, description, match_labels, device_type_id, create_time, update_time';

function toGroup(row: Row): GroupRecord {
  return {
    tenantId: row.tenant_id,
    id: row.id,
    seq: String(row.seq),
    name: row.name,
    description: row.description,
    matchLabels: row.match_labels,
    deviceTypeId: row.device_type_id ?? undefined,
    createTime: row.create_time,
    updateTime: row.update_time,
  };
}

function nameTaken(name: string) {
  return (err: { code?: string }) => {
    if (err.code === PG_ERROR.uniqueViolation) throw errors.alreadyExists(`a group named ${JSON.stringify(name)} already exists`);
    if (err.code === PG_ERROR.foreignKeyViolation) throw errors.invalidArgument([{ field: 'group.selector.device_type_id', description: 'names no device type of the tenant' }]);
    throw err;
  };
}

/** The PostgreSQL implementation (schema `device`). */
export class PgGroupStore implements GroupStore {
  constructor(private readonly pool: Pool) {}

  async insert(tenantId: string, id: string, input: GroupInput): Promise<GroupRecord> {
    const { rows } = await this.pool
      .query(`INSERT INTO device_groups (tenant_id, id, name, description, match_labels, device_type_id) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`, [
        tenantId,
        id,
        input.name,
        input.description,
        JSON.stringify(input.matchLabels),
        input.deviceTypeId ?? null,
      ])
      .catch(nameTaken(input.name));
    return toGroup(rows[0]);
  }

  async get(tenantId: string, id: string): Promise<GroupRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.pool.query(`SELECT ${COLUMNS} FROM device_groups WHERE tenant_id = $1 AND id = $2::uuid`, [tenantId, id]);
    return rows[0] ? toGroup(rows[0]) : undefined;
  }

  async replace(tenantId: string, id: string, input: GroupInput): Promise<GroupRecord | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.pool
      .query(
        `UPDATE device_groups SET name = $3, description = $4, match_labels = $5, device_type_id = $6, update_time = now()
          WHERE tenant_id = $1 AND id = $2::uuid RETURNING ${COLUMNS}`,
        [tenantId, id, input.name, input.description, JSON.stringify(input.matchLabels), input.deviceTypeId ?? null],
      )
      .catch(nameTaken(input.name));
    return rows[0] ? toGroup(rows[0]) : undefined;
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    if (!isUuid(id)) return false;
    const { rowCount } = await this.pool.query('DELETE FROM device_groups WHERE tenant_id = $1 AND id = $2::uuid', [tenantId, id]);
    return (rowCount ?? 0) > 0;
  }

  async list(tenantId: string, afterSeq: string | undefined, limit: number): Promise<GroupRecord[]> {
    const { rows } = await this.pool.query(`SELECT ${COLUMNS} FROM device_groups WHERE tenant_id = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3`, [
      tenantId,
      afterSeq ?? '0',
      limit,
    ]);
    return rows.map(toGroup);
  }

  async *scanAll(batch: number): AsyncIterable<GroupRecord[]> {
    let after = '0';
    for (;;) {
      const { rows } = await this.pool.query(`SELECT ${COLUMNS} FROM device_groups WHERE seq > $1::bigint ORDER BY seq LIMIT $2`, [after, batch]);
      if (rows.length === 0) return;
      const groups = rows.map(toGroup);
      yield groups;
      after = groups[groups.length - 1].seq;
    }
  }
}
