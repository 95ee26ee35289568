import { Pool, PoolClient } from '@iot-mesh/runtime';
import { ApiKeyRecord, Cursor, RefreshTokenRecord, TenantRecord, UserRecord } from './records';

type Db = Pool | PoolClient;

const TENANT_COLUMNS = 'id, name, platform, create_time';
const USER_COLUMNS = 'id, tenant_id, email, display_name, role, password_hash, create_time, update_time';
const API_KEY_COLUMNS = 'id, tenant_id, name, prefix, role, create_time, expire_time, revoke_time, last_used_time';

function tenant(row: any): TenantRecord {
  return { id: row.id, name: row.name, platform: row.platform, createTime: row.create_time };
}

function user(row: any): UserRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    email: row.email,
    displayName: row.display_name,
    role: row.role,
    passwordHash: row.password_hash,
    createTime: row.create_time,
    updateTime: row.update_time,
  };
}

function apiKey(row: any): ApiKeyRecord {
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

function refreshToken(row: any): RefreshTokenRecord {
  return {
    id: row.id,
    familyId: row.family_id,
    userId: row.user_id,
    tenantId: row.tenant_id,
    expireTime: row.expire_time,
    useTime: row.use_time,
    revokeTime: row.revoke_time,
  };
}

/**
 * Page order and keyset condition "after (create_time, id)". Cursors carry
 * JavaScript dates (milliseconds) while PostgreSQL keeps microseconds, so
 * both order and comparison use the time truncated to milliseconds.
 */
const PAGE_KEY = "date_trunc('milliseconds', create_time), id";
const PAGE_ORDER = `ORDER BY ${PAGE_KEY}`;

function after(cursor: Cursor | undefined, params: unknown[]): string {
  if (!cursor) return '';
  params.push(cursor[0], cursor[1]);
  return ` AND (${PAGE_KEY}) > ($${params.length - 1}::timestamptz, $${params.length}::uuid)`;
}

/** The SQL of the identity data. Every query of tenant data names the tenant. */
export const identityStore = {
  async countTenants(db: Db): Promise<number> {
    const { rows } = await db.query('SELECT count(*)::int AS n FROM tenants');
    return rows[0].n;
  },

  async insertTenant(db: Db, t: { id: string; name: string; platform: boolean }): Promise<TenantRecord> {
    const { rows } = await db.query(`INSERT INTO tenants (id, name, platform) VALUES ($1, $2, $3) RETURNING ${TENANT_COLUMNS}`, [t.id, t.name, t.platform]);
    return tenant(rows[0]);
  },

  async tenantById(db: Db, id: string): Promise<TenantRecord | undefined> {
    const { rows } = await db.query(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE id = $1`, [id]);
    return rows[0] ? tenant(rows[0]) : undefined;
  },

  async tenantByName(db: Db, name: string): Promise<TenantRecord | undefined> {
    const { rows } = await db.query(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE name = $1`, [name]);
    return rows[0] ? tenant(rows[0]) : undefined;
  },

  async listTenants(db: Db, limit: number, cursor?: Cursor): Promise<TenantRecord[]> {
    const params: unknown[] = [];
    const where = after(cursor, params);
    params.push(limit);
    const { rows } = await db.query(`SELECT ${TENANT_COLUMNS} FROM tenants WHERE true${where} ${PAGE_ORDER} LIMIT $${params.length}`, params);
    return rows.map(tenant);
  },

  async insertUser(db: Db, u: Omit<UserRecord, 'createTime' | 'updateTime'>): Promise<UserRecord> {
    const { rows } = await db.query(
      `INSERT INTO users (id, tenant_id, email, display_name, role, password_hash) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${USER_COLUMNS}`,
      [u.id, u.tenantId, u.email, u.displayName, u.role, u.passwordHash],
    );
    return user(rows[0]);
  },

  async userById(db: Db, tenantId: string, id: string): Promise<UserRecord | undefined> {
    const { rows } = await db.query(`SELECT ${USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return rows[0] ? user(rows[0]) : undefined;
  },

  async userByEmail(db: Db, tenantId: string, email: string): Promise<UserRecord | undefined> {
    const { rows } = await db.query(`SELECT ${USER_COLUMNS} FROM users WHERE tenant_id = $1 AND email = $2`, [tenantId, email]);
    return rows[0] ? user(rows[0]) : undefined;
  },

  async listUsers(db: Db, tenantId: string, limit: number, cursor?: Cursor): Promise<UserRecord[]> {
    const params: unknown[] = [tenantId];
    const where = after(cursor, params);
    params.push(limit);
    const { rows } = await db.query(`SELECT ${USER_COLUMNS} FROM users WHERE tenant_id = $1${where} ${PAGE_ORDER} LIMIT $${params.length}`, params);
    return rows.map(user);
  },

  async updateUser(db: Db, tenantId: string, id: string, changes: { displayName?: string; role?: string; passwordHash?: string }): Promise<UserRecord | undefined> {
    const { rows } = await db.query(
      `UPDATE users SET display_name = COALESCE($3, display_name), role = COALESCE($4, role),
              password_hash = COALESCE($5, password_hash), update_time = now()
        WHERE tenant_id = $1 AND id = $2 RETURNING ${USER_COLUMNS}`,
      [tenantId, id, changes.displayName ?? null, changes.role ?? null, changes.passwordHash ?? null],
    );
    return rows[0] ? user(rows[0]) : undefined;
  },

  async deleteUser(db: Db, tenantId: string, id: string): Promise<boolean> {
    const { rowCount } = await db.query('DELETE FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return (rowCount ?? 0) > 0;
  },

  async insertRefreshToken(db: Db, t: { id: string; familyId: string; userId: string; tenantId: string; hash: Buffer; expireTime: Date }): Promise<void> {
    await db.query(
      'INSERT INTO refresh_tokens (id, family_id, user_id, tenant_id, token_hash, expire_time) VALUES ($1, $2, $3, $4, $5, $6)',
      [t.id, t.familyId, t.userId, t.tenantId, t.hash, t.expireTime],
    );
  },

  /** The token with this hash, locked for the rest of the transaction. */
  async refreshTokenForUpdate(db: Db, hash: Buffer): Promise<RefreshTokenRecord | undefined> {
    const { rows } = await db.query('SELECT * FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE', [hash]);
    return rows[0] ? refreshToken(rows[0]) : undefined;
  },

  async markRefreshTokenUsed(db: Db, id: string): Promise<void> {
    await db.query('UPDATE refresh_tokens SET use_time = now() WHERE id = $1', [id]);
  },

  async revokeRefreshFamily(db: Db, familyId: string): Promise<number> {
    const { rowCount } = await db.query('UPDATE refresh_tokens SET revoke_time = now() WHERE family_id = $1 AND revoke_time IS NULL', [familyId]);
    return rowCount ?? 0;
  },

  async revokeRefreshTokensOfUser(db: Db, userId: string): Promise<number> {
    const { rowCount } = await db.query('UPDATE refresh_tokens SET revoke_time = now() WHERE user_id = $1 AND revoke_time IS NULL', [userId]);
    return rowCount ?? 0;
  },

  async insertApiKey(db: Db, k: { id: string; tenantId: string; name: string; prefix: string; hash: Buffer; role: string; createdBy: string; expireTime: Date | null }): Promise<ApiKeyRecord> {
    const { rows } = await db.query(
      `INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, role, created_by, expire_time)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${API_KEY_COLUMNS}`,
      [k.id, k.tenantId, k.name, k.prefix, k.hash, k.role, k.createdBy, k.expireTime],
    );
    return apiKey(rows[0]);
  },

  async apiKeyByHash(db: Db, hash: Buffer): Promise<ApiKeyRecord | undefined> {
    const { rows } = await db.query(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1`, [hash]);
    return rows[0] ? apiKey(rows[0]) : undefined;
  },

  async listApiKeys(db: Db, tenantId: string, limit: number, cursor?: Cursor): Promise<ApiKeyRecord[]> {
    const params: unknown[] = [tenantId];
    const where = after(cursor, params);
    params.push(limit);
    const { rows } = await db.query(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1${where} ${PAGE_ORDER} LIMIT $${params.length}`, params);
    return rows.map(apiKey);
  },

  /** Revokes a key of the tenant (idempotent: an already revoked key keeps its revoke time). */
  async revokeApiKey(db: Db, tenantId: string, id: string): Promise<{ key: ApiKeyRecord; changed: boolean } | undefined> {
    const { rows } = await db.query(
      `UPDATE api_keys SET revoke_time = now() WHERE tenant_id = $1 AND id = $2 AND revoke_time IS NULL RETURNING ${API_KEY_COLUMNS}`,
      [tenantId, id],
    );
    if (rows[0]) return { key: apiKey(rows[0]), changed: true };
    const existing = await db.query(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return existing.rows[0] ? { key: apiKey(existing.rows[0]), changed: false } : undefined;
  },

  /** Notes a key's use, at most once a minute per key. */
  async touchApiKey(db: Db, id: string): Promise<void> {
    await db.query(`UPDATE api_keys SET last_used_time = now() WHERE id = $1 AND (last_used_time IS NULL OR last_used_time < now() - interval '1 minute')`, [id]);
  },
};
