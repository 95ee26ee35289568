import type { Pool } from '@iot-mesh/runtime';
import { deleteInChunks } from './chunked-delete';

/** A stored retention policy: the tenant's default (deviceType '') or a device type's; 0 days inherits. */
export interface StoredRetention {
  tenantId: string;
  deviceType: string;
  rawDays: number;
  rollupDays: number;
  updateTime: Date;
}

/** The scope's device filter in SQL: $3 the devices it is limited to, $4 those left out (either NULL). */
const IN_SCOPE = '($3::text[] IS NULL OR device_id = ANY($3)) AND ($4::text[] IS NULL OR NOT (device_id = ANY($4)))';

/** Which of a tenant's devices a deletion covers: only these, or all but these. */
export type DeviceScope = { only: string[] } | { except: string[] };

/**
 * Retention policies (table `retention_policies`, migration 0004) and the
 * scoped deletions they drive, on PostgreSQL: points and rollups of one
 * tenant's devices older than a time, in bounded chunks.
 */
export class PostgresRetentionStore {
  constructor(private readonly pool: Pool) {}

  /** Policies of one tenant, or of every tenant; the tenant default first, then device types by name. */
  async list(tenantId?: string): Promise<StoredRetention[]> {
    const { rows } = await this.pool.query(
      'SELECT * FROM retention_policies WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY tenant_id, device_type',
      [tenantId ?? null],
    );
    return rows.map((r) => ({ tenantId: r.tenant_id, deviceType: r.device_type, rawDays: r.raw_days, rollupDays: r.rollup_days, updateTime: r.update_time }));
  }

  /** Stores a policy; 0 and 0 removes it. */
  async set(tenantId: string, deviceType: string, rawDays: number, rollupDays: number): Promise<void> {
    if (rawDays === 0 && rollupDays === 0) {
      await this.pool.query('DELETE FROM retention_policies WHERE tenant_id = $1 AND device_type = $2', [tenantId, deviceType]);
      return;
    }
    await this.pool.query(
      `INSERT INTO retention_policies (tenant_id, device_type, raw_days, rollup_days) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tenant_id, device_type) DO UPDATE SET raw_days = $3, rollup_days = $4, update_time = now()`,
      [tenantId, deviceType, rawDays, rollupDays],
    );
  }

  /** Deletes the tenant's points (and latest values) of the scope's devices older than `before`; how many points went. */
  async deletePoints(tenantId: string, scope: DeviceScope, before: Date, chunkSize = 10_000): Promise<number> {
    const [only, except] = scopeArrays(scope);
    if (only && only.length === 0) return 0;
    // By primary key: ctid is not unique across the day partitions.
    const total = await deleteInChunks(
      this.pool,
      `DELETE FROM points p USING (
         SELECT tenant_id, device_id, metric, time, message_id, point_index FROM points
          WHERE tenant_id = $1 AND time < $2 AND ${IN_SCOPE}
          LIMIT $5) d
        WHERE p.tenant_id = d.tenant_id AND p.device_id = d.device_id AND p.metric = d.metric
          AND p.time = d.time AND p.message_id = d.message_id AND p.point_index = d.point_index`,
      [tenantId, before, only, except],
      chunkSize,
    );
    await this.pool.query(
      `DELETE FROM latest_points WHERE tenant_id = $1 AND time < $2 AND ${IN_SCOPE}`,
      [tenantId, before, only, except],
    );
    return total;
  }

  /** Deletes the tenant's rollups of the scope's devices whose bucket starts before `before`. */
  async deleteRollups(tenantId: string, scope: DeviceScope, before: Date, chunkSize = 50_000): Promise<number> {
    const [only, except] = scopeArrays(scope);
    if (only && only.length === 0) return 0;
    return deleteInChunks(
      this.pool,
      `DELETE FROM rollups WHERE ctid = ANY (ARRAY(SELECT ctid FROM rollups
         WHERE tenant_id = $1 AND bucket < $2 AND ${IN_SCOPE}
         LIMIT $5))`,
      [tenantId, before, only, except],
      chunkSize,
    );
  }

  /** The oldest point and the oldest rollup bucket of the scope's devices (undefined: none stored). */
  async oldest(tenantId: string, scope: DeviceScope): Promise<{ point?: Date; rollup?: Date }> {
    const [only, except] = scopeArrays(scope);
    if (only && only.length === 0) return {};
    const filter = `tenant_id = $1 AND ($2::text[] IS NULL OR device_id = ANY($2)) AND ($3::text[] IS NULL OR NOT (device_id = ANY($3)))`;
    const { rows } = await this.pool.query(
      `SELECT (SELECT min(time) FROM points WHERE ${filter}) AS point, (SELECT min(bucket) FROM rollups WHERE ${filter}) AS rollup`,
      [tenantId, only, except],
    );
    return { point: rows[0].point ?? undefined, rollup: rows[0].rollup ?? undefined };
  }
}

function scopeArrays(scope: DeviceScope): [string[] | null, string[] | null] {
  return 'only' in scope ? [scope.only, null] : [null, scope.except.length > 0 ? scope.except : null];
}
