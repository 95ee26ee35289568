import crypto, { KeyObject } from 'node:crypto';
import { AccessTokenClaims, TOKEN_ALGORITHM, TOKEN_AUDIENCE, TOKEN_ISSUER } from '@iot-mesh/runtime';

const b64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

/** The claims of a new access token for a user of a tenant, valid `ttlSeconds` from now. */
export function accessTokenClaims(user: { id: string; role: AccessTokenClaims['role'] }, tenant: { id: string; platform: boolean }, ttlSeconds: number): AccessTokenClaims {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: TOKEN_ISSUER,
    aud: TOKEN_AUDIENCE,
    sub: user.id,
    tid: tenant.id,
    role: user.role,
    // Only admins of the bootstrap tenant administer the platform.
    pa: tenant.platform && user.role === 'admin',
    iat: now,
    exp: now + ttlSeconds,
    jti: crypto.randomUUID(),
  };
}

/**
 * Signs claims as a compact JWS with ES256 and the given key id. Only the
 * signing service signs; every service verifies with the runtime's
 * `verifyAccessToken` against the published keys.
 */
export function signAccessToken(claims: AccessTokenClaims, privateKey: KeyObject, kid: string): string {
  const header = b64url(JSON.stringify({ alg: TOKEN_ALGORITHM, typ: 'JWT', kid }));
  const payload = b64url(JSON.stringify(claims));
  const signature = crypto.sign('sha256', Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${b64url(signature)}`;
}
