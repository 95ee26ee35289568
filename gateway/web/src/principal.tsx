import { createContext, ReactNode, useContext, useEffect, useState } from 'react';
import { Role } from '../../../gen/es/iot/common/v1/common_pb';
import { Principal } from '../../../gen/es/iot/signing/v1/auth_pb';
import { api, errorMessage } from './api';

/** What the signed-in caller may do, from WhoAmI: pages offer only what the caller's role allows. */
export interface Abilities {
  principal: Principal | undefined;
  /** Viewer or above: read everything in the tenant. */
  canRead: boolean;
  /** Operator or admin: devices, twins, commands, credentials, alert rules. */
  canOperate: boolean;
  /** Admin: users and API keys. */
  canAdmin: boolean;
  /** Admin of the platform tenant: tenants. */
  platformAdmin: boolean;
}

const NOBODY: Abilities = { principal: undefined, canRead: false, canOperate: false, canAdmin: false, platformAdmin: false };
const AbilitiesContext = createContext<Abilities>(NOBODY);

/** The abilities of a principal (the same ladder as the services' access rules). */
export function abilitiesOf(principal: Principal | undefined): Abilities {
  if (!principal) return NOBODY;
  const role = principal.role;
  return {
    principal,
    canRead: role === Role.ADMIN || role === Role.OPERATOR || role === Role.VIEWER,
    canOperate: role === Role.ADMIN || role === Role.OPERATOR,
    canAdmin: role === Role.ADMIN,
    platformAdmin: role === Role.ADMIN && principal.platformAdmin,
  };
}

/** Asks WhoAmI once per session and provides the answer to every page. */
export function AbilitiesProvider({ sessionKey, children }: { sessionKey: string; children: ReactNode }) {
  const [abilities, setAbilities] = useState<Abilities | undefined>();
  const [error, setError] = useState('');
  useEffect(() => {
    const abort = new AbortController();
    api.authed
      .whoAmI({}, { signal: abort.signal })
      .then((res) => setAbilities(abilitiesOf(res.principal)))
      .catch((err) => !abort.signal.aborted && setError(errorMessage(err)));
    return () => abort.abort();
  }, [sessionKey]);
  if (error) return <p className="error" role="alert">{error}</p>;
  if (!abilities) return <p className="muted">Loading…</p>;
  return <AbilitiesContext.Provider value={abilities}>{children}</AbilitiesContext.Provider>;
}

/** The caller's abilities. */
export function useAbilities(): Abilities {
  return useContext(AbilitiesContext);
}

/** Role names as people read them. */
export function roleName(role: Role): string {
  return role === Role.ADMIN ? 'admin' : role === Role.OPERATOR ? 'operator' : role === Role.VIEWER ? 'viewer' : 'none';
}
