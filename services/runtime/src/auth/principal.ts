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
}
