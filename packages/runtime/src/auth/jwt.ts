import crypto, { KeyObject } from 'node:crypto';

/**
 * Verification of the platform's access tokens (compact JWS, ES256) against
 * published keys. Only the signing service signs; its signer lives there.
 */

/** Who issues access tokens and who they are for; checked on every verification. */
export const TOKEN_ISSUER = 'iot-signing';
export const TOKEN_AUDIENCE = 'iot-mesh';

/** The only signature algorithm the platform signs with (in the signing service) or accepts. */
export const TOKEN_ALGORITHM = 'ES256';

/** Claims of a platform access token. */
export interface AccessTokenClaims {
  iss: string;
  aud: string;
  /** User id. */
  sub: string;
  /** Tenant id. */
  tid: string;
  role: 'admin' | 'operator' | 'viewer';
  /** Platform admin. */
  pa: boolean;
  /** Seconds since the epoch. */
  iat: number;
  exp: number;
  jti: string;
}

/** A public key of the JWK set, in RFC 7517 form. */
export interface PublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  alg: 'ES256';
  use: 'sig';
}

/** Why a token was refused; for logs and tests, never for the client. */
export class TokenError extends Error {
  constructor(readonly reason: 'malformed' | 'algorithm' | 'unknown_key' | 'signature' | 'expired' | 'claims') {
    super(`access token rejected: ${reason}`);
    this.name = 'TokenError';
  }
}

function decodeJson(part: string): Record<string, unknown> {
  if (!/^[A-Za-z0-9_-]+$/.test(part)) throw new TokenError('malformed');
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new TokenError('malformed');
}

/**
 * Verifies a compact JWS access token: ES256 only (so `none` and HS256 with a
 * public key as secret fail), a `kid` that `keyFor` knows, a valid signature,
 * issuer, audience and an expiry in the future. Throws {@link TokenError}.
 */
export async function verifyAccessToken(
  token: string,
  keyFor: (kid: string) => Promise<KeyObject | undefined>,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<AccessTokenClaims> {
  const parts = token.split('.');
  if (parts.length !== 3 || token.length > 4096) throw new TokenError('malformed');
  const [headerPart, payloadPart, signaturePart] = parts;
  const header = decodeJson(headerPart);
  if (header.alg !== TOKEN_ALGORITHM) throw new TokenError('algorithm');
  if (header.crit !== undefined) throw new TokenError('malformed');
  if (typeof header.kid !== 'string' || header.kid.length === 0) throw new TokenError('unknown_key');
  const key = await keyFor(header.kid);
  if (!key) throw new TokenError('unknown_key');
  if (!/^[A-Za-z0-9_-]+$/.test(signaturePart)) throw new TokenError('malformed');
  const signature = Buffer.from(signaturePart, 'base64url');
  if (signature.length !== 64) throw new TokenError('signature');
  const ok = crypto.verify('sha256', Buffer.from(`${headerPart}.${payloadPart}`), { key, dsaEncoding: 'ieee-p1363' }, signature);
  if (!ok) throw new TokenError('signature');
  const claims = decodeJson(payloadPart);
  if (claims.iss !== TOKEN_ISSUER || claims.aud !== TOKEN_AUDIENCE) throw new TokenError('claims');
  if (typeof claims.sub !== 'string' || typeof claims.tid !== 'string' || typeof claims.exp !== 'number') throw new TokenError('claims');
  if (!['admin', 'operator', 'viewer'].includes(claims.role as string)) throw new TokenError('claims');
  if (claims.exp <= nowSeconds) throw new TokenError('expired');
  return claims as unknown as AccessTokenClaims;
}

/** A verification key from a JWK; undefined when the JWK is not an ES256 P-256 key. */
export function keyFromJwk(jwk: { kty?: string; crv?: string; x?: string; y?: string; alg?: string; use?: string }): KeyObject | undefined {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.x || !jwk.y) return undefined;
  if (jwk.alg && jwk.alg !== TOKEN_ALGORITHM) return undefined;
  if (jwk.use && jwk.use !== 'sig') return undefined;
  try {
    return crypto.createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, format: 'jwk' });
  } catch {
    return undefined;
  }
}
