import { errors } from '../errors';
import { Logger } from '../logger';
import { Redis } from '../redis';
import type { CallContext, Middleware } from '../rpc';
import { Access, accessRuleOf, AccessRules, descriptorAccessRules, takesNoUserCredential } from './access-rules';
import { ApiKeyLookup, cachedApiKeyLookup } from './api-keys';
import { cachedTokenVerifier, TokenError } from './jwt';
import { JwksKeySource, KeySource, sharedJwksFetcher } from './key-source';
import { Principal, roleAtLeast, roleFromName } from './principal';
import { grpcJwksFetcher, signingAuthClient, whoAmIApiKeyLookup } from './signing-client';

/** Options of {@link createAuthMiddleware}. */
export interface AuthMiddlewareOptions {
  /**
   * host:port of the signing service. Needed unless both `keySource` and
   * `apiKeys` are given (the signing service itself passes its own).
   */
  signingAddress?: string;
  /** Where token keys come from; default: signing's JWKS over gRPC, cached. */
  keySource?: KeySource;
  /** How API keys resolve; default: signing's WhoAmI, cached (see `apiKeyCacheMs`). */
  apiKeys?: ApiKeyLookup;
  /** Shares the API-key cache and the JWKS across replicas. */
  redis?: Redis;
  /**
   * Prefix of the Redis keys of those shared caches; default
   * `iot:auth:<signingAddress>:`, one cache per signing deployment (test
   * runs start many signing services against one Redis).
   */
  redisPrefix?: string;
  log: Logger;
  /**
   * Access rules; default the `(iot.common.v1.access)` options of the
   * descriptor set the server loads ({@link descriptorAccessRules}).
   */
  rules?: AccessRules;
  /** JWKS cache settings of the default key source. */
  jwks?: { maxAgeMs?: number; minRefreshIntervalMs?: number };
  /** How long a resolved API key is reused (default 30 s) — its revocation delay. */
  apiKeyCacheMs?: number;
}

/** The auth middleware; `close()` releases its client connection to signing. */
export type AuthMiddleware = Middleware & { close(): void };

const BEARER = /^Bearer[ ]+([A-Za-z0-9_.-]+)$/i;
const API_KEY = /^ApiKey[ ]+(\S+)$/i;

/**
 * The interceptor every service runs first: finds the RPC's access rule,
 * authenticates the caller from `authorization: Bearer <jwt>` (verified
 * locally against cached keys, ES256 only) or `authorization: ApiKey <secret>`
 * (a cached lookup at signing), puts the {@link Principal} into
 * `ctx.principal` and enforces the rule. Missing or invalid credentials →
 * UNAUTHENTICATED; too small a role → PERMISSION_DENIED; a method without a
 * rule → PERMISSION_DENIED. Public RPCs pass untouched; on a
 * `device_credential` RPC nothing is verified as a user's: the bearer token
 * goes to the handler as `ctx.deviceCredential` (no such header, or an API
 * key → UNAUTHENTICATED).
 */
export function createAuthMiddleware(options: AuthMiddlewareOptions): AuthMiddleware {
  // Read once, at start: a descriptor without access.proto fails here, not on the first call.
  const rules = options.rules ?? descriptorAccessRules();
  const needsClient = !options.keySource || !options.apiKeys;
  if (needsClient && !options.signingAddress) throw new Error('createAuthMiddleware: signingAddress is required without keySource and apiKeys');
  const client = needsClient ? signingAuthClient(options.signingAddress!) : undefined;
  const prefix = options.redisPrefix ?? `iot:auth:${options.signingAddress ?? 'local'}:`;
  const fetchJwks = client ? grpcJwksFetcher(client) : undefined;
  const keySource =
    options.keySource ??
    new JwksKeySource(options.redis ? sharedJwksFetcher(fetchJwks!, options.redis, { key: `${prefix}jwks`, log: options.log }) : () => fetchJwks!(), {
      ...options.jwks,
      log: options.log,
    });
  const apiKeys =
    options.apiKeys ??
    cachedApiKeyLookup(whoAmIApiKeyLookup(client!), { ttlMs: options.apiKeyCacheMs, redis: options.redis, redisPrefix: `${prefix}apikey:`, log: options.log });
  // A client sends the same token on every call: its signature is verified once, not per call.
  const verifyToken = cachedTokenVerifier((kid) => keySource.keyFor(kid));

  /** The one `authorization` header of a call; UNAUTHENTICATED without one, or with several. */
  function authorizationHeader(ctx: CallContext, missing: string): string {
    const values = ctx.metadata.get('authorization');
    if (values.length === 0) throw errors.unauthenticated(missing);
    if (values.length > 1) throw errors.unauthenticated('more than one authorization header');
    return String(values[0]);
  }

  /** A device's own credential, for the handler to verify: no user token or API key is looked at. */
  function deviceCredential(ctx: CallContext): string {
    const needed = `${ctx.rpc} takes the device's own credential: send authorization: Bearer <device credential>`;
    const bearer = BEARER.exec(authorizationHeader(ctx, needed));
    if (!bearer) throw errors.unauthenticated(needed);
    return bearer[1];
  }

  async function authenticate(ctx: CallContext): Promise<Principal> {
    const header = authorizationHeader(ctx, 'missing credentials: send authorization: Bearer <token> or ApiKey <secret>');
    const bearer = BEARER.exec(header);
    if (bearer) {
      try {
        const claims = await verifyToken(bearer[1]);
        return { kind: 'user', id: claims.sub, tenantId: claims.tid, role: roleFromName(claims.role)!, platformAdmin: claims.pa === true };
      } catch (err) {
        if (err instanceof TokenError) {
          ctx.log.debug({ reason: err.reason }, 'access token rejected');
          throw errors.unauthenticated(err.reason === 'expired' ? 'access token expired' : 'invalid access token');
        }
        throw err;
      }
    }
    const apiKey = API_KEY.exec(header);
    if (apiKey) {
      const principal = await apiKeys(apiKey[1]);
      if (!principal) throw errors.unauthenticated('invalid API key');
      return principal;
    }
    throw errors.unauthenticated('unsupported authorization scheme: use Bearer or ApiKey');
  }

  const middleware = (async (ctx, _request, next) => {
    const access = accessRuleOf(ctx.method, rules);
    if (access === undefined) throw errors.permissionDenied(`${ctx.method} has no access rule`);
    if (takesNoUserCredential(access)) {
      if (access === 'device_credential') ctx.deviceCredential = deviceCredential(ctx);
      return next();
    }
    const principal = await authenticate(ctx);
    if (!allowed(principal, access)) throw errors.permissionDenied(`${ctx.rpc} needs ${access.replace('_', ' ')}`);
    ctx.principal = principal;
    ctx.addLogFields({ principal: principal.id, tenant: principal.tenantId });
    return next();
  }) as AuthMiddleware;
  middleware.close = () => client?.close();
  return middleware;
}

/** True when `principal` satisfies `access`. */
export function allowed(principal: Principal, access: Access): boolean {
  switch (access) {
    case 'public':
    case 'authenticated':
      return true;
    case 'platform_admin':
      return principal.platformAdmin && roleAtLeast(principal.role, 'admin');
    // Only a device's own credential, never a user's or a key's.
    case 'device_credential':
      return false;
    default:
      return roleAtLeast(principal.role, access);
  }
}
