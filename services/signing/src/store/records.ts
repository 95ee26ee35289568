import type { RoleName } from '@iot-mesh/runtime';

/** A tenant as stored. */
export interface TenantRecord {
  id: string;
  name: string;
  platform: boolean;
  createTime: Date;
}

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

/** A keyset cursor: the (create_time, id) of the last row of a page. */
export type Cursor = [string, string];
