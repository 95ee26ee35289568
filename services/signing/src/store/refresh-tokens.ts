import { Db } from './sql';

/** A stored refresh token (by hash). */
export interface RefreshTokenRecord {
  id: string;
  familyId: string;
  userId: string;
  tenantId: string;
  expireTime: Date;
  useTime: Date | null;
  revokeTime: Date | null;
}

/** A refresh token to store: its hash only, never the token. */
export interface NewRefreshToken {
  id: string;
  familyId: string;
  userId: string;
  tenantId: string;
  hash: Buffer;
  expireTime: Date;
}

/** Where refresh tokens are kept. */
export interface RefreshTokenRepository {
  insert(token: NewRefreshToken): Promise<void>;
  /** The token with this hash, locked for the rest of the transaction. */
  forUpdate(hash: Buffer): Promise<RefreshTokenRecord | undefined>;
  markUsed(id: string): Promise<void>;
  /** Revokes every live token of the family; returns how many. */
  revokeFamily(familyId: string): Promise<number>;
  /** Revokes every live token of the user (their sessions end); returns how many. */
  revokeOfUser(userId: string): Promise<number>;
}

function refreshTokenOf(row: any): RefreshTokenRecord {
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

/** {@link RefreshTokenRepository} on the `refresh_tokens` table. */
export class PostgresRefreshTokenRepository implements RefreshTokenRepository {
  constructor(private readonly db: Db) {}

  async insert(t: NewRefreshToken): Promise<void> {
    await this.db.query(
      'INSERT INTO refresh_tokens (id, family_id, user_id, tenant_id, token_hash, expire_time) VALUES ($1, $2, $3, $4, $5, $6)',
      [t.id, t.familyId, t.userId, t.tenantId, t.hash, t.expireTime],
    );
  }

  async forUpdate(hash: Buffer): Promise<RefreshTokenRecord | undefined> {
    const { rows } = await this.db.query('SELECT * FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE', [hash]);
    return rows[0] ? refreshTokenOf(rows[0]) : undefined;
  }

  async markUsed(id: string): Promise<void> {
    await this.db.query('UPDATE refresh_tokens SET use_time = now() WHERE id = $1', [id]);
  }

  async revokeFamily(familyId: string): Promise<number> {
    const { rowCount } = await this.db.query('UPDATE refresh_tokens SET revoke_time = now() WHERE family_id = $1 AND revoke_time IS NULL', [familyId]);
    return rowCount ?? 0;
  }

  async revokeOfUser(userId: string): Promise<number> {
    const { rowCount } = await this.db.query('UPDATE refresh_tokens SET revoke_time = now() WHERE user_id = $1 AND revoke_time IS NULL', [userId]);
    return rowCount ?? 0;
  }
}
