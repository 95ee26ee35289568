import { Role } from '../../../../gen/ts/iot/common/v1/common';

export { Role };

/** An authenticated caller, as the auth middleware puts it into the call context. */
export interface Principal {
  kind: 'user' | 'api_key' | 'service';
  /** User id, API key id or service name. */
  id: string;
  tenantId: string;
  role: Role;
  /** Admin of the platform tenant: may manage tenants and signing keys. */
  platformAdmin: boolean;
  /** Email for users, key name for API keys, when known. */
  name?: string;
}

/** Role names as they appear in tokens and access rules. */
export type RoleName = 'viewer' | 'operator' | 'admin';

const RANK: Record<RoleName, number> = { viewer: 1, operator: 2, admin: 3 };

/** The name of a role enum value; undefined for ROLE_UNSPECIFIED or unknown values. */
export function roleName(role: Role): RoleName | undefined {
  switch (role) {
    case Role.ROLE_ADMIN:
      return 'admin';
    case Role.ROLE_OPERATOR:
      return 'operator';
    case Role.ROLE_VIEWER:
      return 'viewer';
    default:
      return undefined;
  }
}

/** The enum value of a role name; undefined for anything else. */
export function roleFromName(name: unknown): Role | undefined {
  switch (name) {
    case 'admin':
      return Role.ROLE_ADMIN;
    case 'operator':
      return Role.ROLE_OPERATOR;
    case 'viewer':
      return Role.ROLE_VIEWER;
    default:
      return undefined;
  }
}

/** True when `role` is `minimum` or above it (viewer < operator < admin). */
export function roleAtLeast(role: Role, minimum: RoleName): boolean {
  const name = roleName(role);
  return name !== undefined && RANK[name] >= RANK[minimum];
}
