import type { RoleName } from '@iot-mesh/runtime';
import { Cursor, Db, listAfter } from './sql';

/** An API key's metadata as stored (the secret's hash stays in the table). */
export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  name: string;
  prefix: string;
  role: RoleName;
  createTime: Date;
  expireTime: Date | null;
  revokeTime: Date | null;
  lastUsedTime: Date | null;
}

/** An API key to store: the hash of its secret only. */
export interface NewApiKey {
  id: string;
  tenantId: string;
  name: string;
  prefix: string;
  hash: Buffer;
  role: RoleName;
  createdBy: string;
  expireTime: Date | null;
}

/** Where API keys are kept. */
export interface ApiKeyRepository {
  insert(key: NewApiKey): Promise<ApiKeyRecord>;
  byHash(hash: Buffer): Promise<ApiKeyRecord | undefined>;
  /** Up to `limit` keys of the tenant after `cursor`, oldest first. */
  list(tenantId: string, limit: number, cursor?: Cursor): Promise<ApiKeyRecord[]>;
  /** Revokes a key of the tenant (idempotent: an already revoked key keeps its revoke time); undefined when there is no such key. */
  revoke(tenantId: string, id: string): Promise<{ key: ApiKeyRecord; changed: boolean } | undefined>;
  /** Notes a key's use, at most once a minute per key. */
  touch(id: string): Promise<void>;
}

const COLUMNS = 'id, tenant_id, name, prefix, role, create_time, expire_time, revoke_time, last_used_time';

function apiKeyOf(row: any): ApiKeyRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    prefix: row.prefix,
    role: row.role,
    createTime: row.create_time,
    expireTime: row.expire_time,
    revokeTime: row.revoke_time,
    lastUsedTime: row.last_used_time,
  };
}

/** {@link ApiKeyRepository} on the `api_keys` table. */
export class PostgresApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly db: Db) {}

  async insert(k: NewApiKey): Promise<ApiKeyRecord> {
    const { rows } = await this.db.query(
      `INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, role, created_by, expire_time)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
      [k.id, k.tenantId, k.name, k.prefix, k.hash, k.role, k.createdBy, k.expireTime],
    );
    return apiKeyOf(rows[0]);
  }

  async byHash(hash: Buffer): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM api_keys WHERE secret_hash = $1`, [hash]);
    return rows[0] ? apiKeyOf(rows[0]) : undefined;
  }

  list(tenantId: string, limit: number, cursor?: Cursor): Promise<ApiKeyRecord[]> {
    return listAfter(this.db, `SELECT ${COLUMNS} FROM api_keys WHERE tenant_id = $1`, [tenantId], cursor, limit, apiKeyOf);
  }

  async revoke(tenantId: string, id: string): Promise<{ key: ApiKeyRecord; changed: boolean } | undefined> {
    const { rows } = await this.db.query(
      `UPDATE api_keys SET revoke_time = now() WHERE tenant_id = $1 AND id = $2 AND revoke_time IS NULL RETURNING ${COLUMNS}`,
      [tenantId, id],
    );
    if (rows[0]) return { key: apiKeyOf(rows[0]), changed: true };
    const existing = await this.db.query(`SELECT ${COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return existing.rows[0] ? { key: apiKeyOf(existing.rows[0]), changed: false } : undefined;
  }

  async touch(id: string): Promise<void> {
    await this.db.query(`UPDATE api_keys SET last_used_time = now() WHERE id = $1 AND (last_used_time IS NULL OR last_used_time < now() - interval '1 minute')`, [id]);
  }
}
