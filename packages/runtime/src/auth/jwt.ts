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

/** Options of {@link cachedTokenVerifier}. */
export interface TokenCacheOptions {
  /** Most verified tokens remembered (oldest forgotten first); default 10,000. */
  maxEntries?: number;
  /** The clock, in seconds since the epoch (tests). */
  nowSeconds?: () => number;
}

/**
 * {@link verifyAccessToken} that verifies a token's signature once and
 * remembers the verdict for the token's lifetime: the same bearer token sent
 * again (every call of a client does) costs a map lookup instead of an ECDSA
 * verification. The whole token is the key, so a cached verdict is only ever
 * reused for exactly the bytes that were verified. Each hit still checks the
 * expiry against the clock and asks `keyFor` for the token's key: a key
 * retired from the published set (or replaced under the same kid) refuses
 * its tokens as before. Refused tokens are never cached.
 */
export function cachedTokenVerifier(keyFor: (kid: string) => Promise<KeyObject | undefined>, options: TokenCacheOptions = {}): (token: string) => Promise<AccessTokenClaims> {
  const maxEntries = options.maxEntries ?? 10_000;
  const now = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  const verified = new Map<string, { claims: AccessTokenClaims; kid: string; key: KeyObject }>();
  return async (token) => {
    const hit = verified.get(token);
    if (hit) {
      if (hit.claims.exp <= now()) {
        verified.delete(token);
        throw new TokenError('expired');
      }
      if ((await keyFor(hit.kid)) === hit.key) return hit.claims;
      verified.delete(token);
    }
    let used: KeyObject | undefined;
    let kid = '';
    const claims = await verifyAccessToken(
      token,
      async (k) => {
        kid = k;
        used = await keyFor(k);
        return used;
      },
      now(),
    );
    if (verified.size >= maxEntries) {
      // Forget the oldest entries (a Map iterates in insertion order), and any that expired.
      const seconds = now();
      for (const [t, entry] of verified) {
        if (verified.size < maxEntries * 0.9 && entry.claims.exp > seconds) break;
        verified.delete(t);
      }
    }
    verified.set(token, { claims, kid, key: used! });
    return claims;
  };
}
