import { Cursor, Db, listAfter } from './sql';

/** A tenant as stored. */
export interface TenantRecord {
  id: string;
  name: string;
  /** The tenant created by bootstrap; its admins are platform admins. */
  platform: boolean;
  createTime: Date;
}

/** Where tenants are kept. */
export interface TenantRepository {
  count(): Promise<number>;
  insert(tenant: { id: string; name: string; platform: boolean }): Promise<TenantRecord>;
  byId(id: string): Promise<TenantRecord | undefined>;
  byName(name: string): Promise<TenantRecord | undefined>;
  /** Up to `limit` tenants after `cursor`, oldest first. */
  list(limit: number, cursor?: Cursor): Promise<TenantRecord[]>;
  /** Serialises bootstraps across replicas until the surrounding transaction ends. */
  lockBootstrap(): Promise<void>;
}

const COLUMNS = 'id, name, platform, create_time';

function tenantOf(row: any): TenantRecord {
  return { id: row.id, name: row.name, platform: row.platform, createTime: row.create_time };
}

/** {@link TenantRepository} on the `tenants` table. */
export class PostgresTenantRepository implements TenantRepository {
  constructor(private readonly db: Db) {}

  async count(): Promise<number> {
    const { rows } = await this.db.query('SELECT count(*)::int AS n FROM tenants');
    return rows[0].n;
  }

  async insert(t: { id: string; name: string; platform: boolean }): Promise<TenantRecord> {
    const { rows } = await this.db.query(`INSERT INTO tenants (id, name, platform) VALUES ($1, $2, $3) RETURNING ${COLUMNS}`, [t.id, t.name, t.platform]);
    return tenantOf(rows[0]);
  }

  async byId(id: string): Promise<TenantRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM tenants WHERE id = $1`, [id]);
    return rows[0] ? tenantOf(rows[0]) : undefined;
  }

  async byName(name: string): Promise<TenantRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM tenants WHERE name = $1`, [name]);
    return rows[0] ? tenantOf(rows[0]) : undefined;
  }

  list(limit: number, cursor?: Cursor): Promise<TenantRecord[]> {
    return listAfter(this.db, `SELECT ${COLUMNS} FROM tenants WHERE true`, [], cursor, limit, tenantOf);
  }

  async lockBootstrap(): Promise<void> {
    await this.db.query("SELECT pg_advisory_xact_lock(hashtext('iot-signing:bootstrap'))");
  }
}
