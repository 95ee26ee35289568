import crypto, { KeyObject } from 'node:crypto';
import { Pool } from 'pg';
import { AccessTokenClaims, TOKEN_AUDIENCE, TOKEN_ISSUER } from '@iot-mesh/runtime';
import { signAccessToken } from '../../src/domain/access-tokens';
import { currentSigningKeyOf } from '../../src/domain/signing-keys';
import { KeyEncryption } from '../../src/store/key-encryption';
import { PostgresSigningKeyRepository } from '../../src/store/signing-keys';

export { signAccessToken };

/** Reads the signing service's current private key straight from its database, to forge test tokens. */
export async function currentSigningKey(databaseUrl: string, encryptionKey: string): Promise<{ kid: string; privateKey: KeyObject }> {
  const pool = new Pool({ connectionString: databaseUrl, options: '-c search_path=signing,public', max: 1 });
  try {
    const key = currentSigningKeyOf(await new PostgresSigningKeyRepository(pool, new KeyEncryption(encryptionKey)).published());
    if (!key) throw new Error('the signing service has no active signing key');
    return { kid: key.kid, privateKey: key.openPrivateKey() };
  } finally {
    await pool.end();
  }
}

/** Claims of a valid token for the given user, overridable. */
export function claimsFor(user: { sub: string; tid: string; role?: AccessTokenClaims['role'] }, overrides: Partial<AccessTokenClaims> = {}): AccessTokenClaims {
  const now = Math.floor(Date.now() / 1000);
  return { iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, sub: user.sub, tid: user.tid, role: user.role ?? 'viewer', pa: false, iat: now, exp: now + 300, jti: crypto.randomUUID(), ...overrides };
}

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Forgeries an attacker might try, each made from a real token or the real public key. */
export const forge = {
  /** `alg: none` with no signature. */
  none(claims: AccessTokenClaims, kid: string): string {
    return `${b64({ alg: 'none', typ: 'JWT', kid })}.${b64(claims)}.`;
  },
  /** HS256 with the public key (as PEM, and as JWK JSON) used as the HMAC secret. */
  hs256WithPublicKey(claims: AccessTokenClaims, kid: string, publicKey: KeyObject, form: 'pem' | 'jwk'): string {
    const secret = form === 'pem' ? (publicKey.export({ format: 'pem', type: 'spki' }) as string) : JSON.stringify(publicKey.export({ format: 'jwk' }));
    const signingInput = `${b64({ alg: 'HS256', typ: 'JWT', kid })}.${b64(claims)}`;
    return `${signingInput}.${crypto.createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
  },
  /** A real token whose payload was changed (role raised) but signature kept. */
  tampered(token: string, changes: Record<string, unknown>): string {
    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    return `${header}.${b64({ ...claims, ...changes })}.${signature}`;
  },
  /** Signed with a key nobody published, under a published or made-up kid. */
  foreignKey(claims: AccessTokenClaims, kid: string): string {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return signAccessToken(claims, privateKey, kid);
  },
};
