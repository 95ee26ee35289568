import type { RoleName } from '@iot-mesh/runtime';
import { Cursor, Db, listAfter } from './sql';

/** A user as stored (with the password hash, which never leaves the service). */
export interface UserRecord {
  id: string;
  tenantId: string;
  email: string;
  displayName: string;
  role: RoleName;
  passwordHash: string;
  createTime: Date;
  updateTime: Date;
}

/** Fields of a user that can change; unset ones are kept. */
export interface UserChanges {
  displayName?: string;
  role?: RoleName;
  passwordHash?: string;
}

/** Where users are kept. Every lookup names the tenant. */
export interface UserRepository {
  insert(user: Omit<UserRecord, 'createTime' | 'updateTime'>): Promise<UserRecord>;
  byId(tenantId: string, id: string): Promise<UserRecord | undefined>;
  byEmail(tenantId: string, email: string): Promise<UserRecord | undefined>;
  /** Up to `limit` users of the tenant after `cursor`, oldest first. */
  list(tenantId: string, limit: number, cursor?: Cursor): Promise<UserRecord[]>;
  /** The changed user; undefined when there is no such user. */
  update(tenantId: string, id: string, changes: UserChanges): Promise<UserRecord | undefined>;
  /** Whether a user was deleted. */
  delete(tenantId: string, id: string): Promise<boolean>;
}

const COLUMNS = 'id, tenant_id, email, display_name, role, password_hash, create_time, update_time';

function userOf(row: any): UserRecord {
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

/** {@link UserRepository} on the `users` table. */
export class PostgresUserRepository implements UserRepository {
  constructor(private readonly db: Db) {}

  async insert(u: Omit<UserRecord, 'createTime' | 'updateTime'>): Promise<UserRecord> {
    const { rows } = await this.db.query(
      `INSERT INTO users (id, tenant_id, email, display_name, role, password_hash) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
      [u.id, u.tenantId, u.email, u.displayName, u.role, u.passwordHash],
    );
    return userOf(rows[0]);
  }

  async byId(tenantId: string, id: string): Promise<UserRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
    return rows[0] ? userOf(rows[0]) : undefined;
  }

  async byEmail(tenantId: string, email: string): Promise<UserRecord | undefined> {
    const { rows } = await this.db.query(`SELECT ${COLUMNS} FROM users WHERE tenant_id = $1 AND email = $2`, [tenantId, email]);
    return rows[0] ? userOf(rows[0]) : undefined;
  }

  list(tenantId: string, limit: number, cursor?: Cursor): Promise<UserRecord[]> {
    return listAfter(this.db, `SELECT ${COLUMNS} FROM users WHERE tenant_id = $1`, [tenantId], cursor, limit, userOf);
  }

  async update(tenantId: string, id: string, changes: UserChanges): Promise<UserRecord | undefined> {
    const { rows } = await this.db.query(
      `UPDATE users SET display_name = COALESCE($3, display_name), role = COALESCE($4, role),
              password_hash = COALESCE($5, password_hash), update_time = now()
        WHERE tenant_id = $1 AND id = $2 RETURNING ${COLUMNS}`,
      [tenantId, id, changes.displayName ?? null, changes.role ?? null, changes.passwordHash ?? null],
    );
    return rows[0] ? userOf(rows[0]) : undefined;
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const { rowCount } = await this.db.query('DELETE FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return (rowCount ?? 0) > 0;
  }
}
