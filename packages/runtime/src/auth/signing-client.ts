import { defaultAddress } from '../default-ports';
import { status } from '@grpc/grpc-js';
import { AuthServiceClient, PrincipalKind, Principal as PrincipalMessage } from '../../../../gen/ts/iot/signing/v1/auth';
import { insecureClient, unary } from '../client';
import { env } from '../config';
import { errors } from '../errors';
import { ApiKeyLookup } from './api-keys';
import { PublicJwk } from './jwt';
import { Principal } from './principal';

/** Where services find the signing service (host:port of its gRPC server). */
export const DEFAULT_SIGNING_ADDRESS = defaultAddress('signing');

/**
 * The variable every service that verifies callers reads. Spread it into a
 * spec's `env`: `env: { ...signingAddressEnv }` → `ctx.config.SIGNING_ADDRESS`.
 */
export const signingAddressEnv = { SIGNING_ADDRESS: env.string({ fallback: DEFAULT_SIGNING_ADDRESS }) };

/** A client of signing's AuthService. */
export function signingAuthClient(address: string): AuthServiceClient {
  return insecureClient(AuthServiceClient, address);
}

/** Fetches the published JWKS over gRPC (AuthService.GetJwks). */
export function grpcJwksFetcher(client: AuthServiceClient, deadlineMs = 3000): () => Promise<Array<Partial<PublicJwk>>> {
  return async () => {
    const response = await unary(client, client.getJwks, {}, { deadlineMs });
    return response.keys as Array<Partial<PublicJwk>>;
  };
}

/** Converts the wire form of a principal into the runtime's. */
export function principalFromMessage(message: PrincipalMessage): Principal {
  return {
    kind: message.kind === PrincipalKind.PRINCIPAL_KIND_API_KEY ? 'api_key' : 'user',
    id: message.id,
    tenantId: message.tenantId,
    role: message.role,
    platformAdmin: message.platformAdmin,
    name: message.name || undefined,
  };
}

/**
 * Resolves an API key by asking signing who the caller is (AuthService.WhoAmI
 * with `authorization: ApiKey <secret>`). Wrap it in `cachedApiKeyLookup`.
 */
export function whoAmIApiKeyLookup(client: AuthServiceClient, deadlineMs = 3000): ApiKeyLookup {
  return async (secret) => {
    try {
      const response = await unary(client, client.whoAmI, {}, { authorization: `ApiKey ${secret}`, deadlineMs });
      return response.principal ? principalFromMessage(response.principal) : undefined;
    } catch (err) {
      const code = (err as { code?: number }).code;
      if (code === status.UNAUTHENTICATED) return undefined;
      throw errors.unavailable('the signing service is unreachable; cannot check the API key', err);
    }
  };
}
