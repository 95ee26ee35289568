import { errors } from '../errors';
import type { CallContext } from '../rpc';
import { Principal } from './principal';

/** The authenticated caller of a call; UNAUTHENTICATED when there is none. */
export function callerPrincipal(ctx: Pick<CallContext, 'principal'>): Principal {
  if (!ctx.principal) throw errors.unauthenticated();
  return ctx.principal;
}

/**
 * The tenant every query of this call must be scoped to. A resource of
 * another tenant is then simply not found (NOT_FOUND), never revealed.
 */
export function callerTenant(ctx: Pick<CallContext, 'principal'>): string {
  return callerPrincipal(ctx).tenantId;
}
