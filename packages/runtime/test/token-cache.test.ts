import crypto, { KeyObject } from 'node:crypto';
import { AccessTokenClaims, cachedTokenVerifier, TOKEN_AUDIENCE, TOKEN_ISSUER, TokenError } from '../src/auth/jwt';

function sign(privateKey: KeyObject, kid: string, claims: Partial<AccessTokenClaims>): string {
  const header = Buffer.from(JSON.stringify({ alg: 'ES256', kid, typ: 'JWT' })).toString('base64url');
  const body = Buffer.from(JSON.stringify({ iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, sub: 'u1', tid: 't1', role: 'viewer', pa: false, iat: 1000, exp: 2000, jti: 'j', ...claims })).toString('base64url');
  const signature = crypto.sign('sha256', Buffer.from(`${header}.${body}`), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return `${header}.${body}.${signature}`;
}

describe('cachedTokenVerifier', () => {
  const pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });

  it('verifies a token once and answers its repeats from the cache, refusing it once it expires', async () => {
    let now = 1500;
    const keys = new Map([['k1', pair.publicKey]]);
    let verifications = 0;
    const spy = crypto.verify;
    const verify = cachedTokenVerifier(async (kid) => keys.get(kid), { nowSeconds: () => now });
    const token = sign(pair.privateKey, 'k1', {});
    const counting = jest.spyOn(crypto, 'verify').mockImplementation(((...args: Parameters<typeof spy>) => {
      verifications++;
      return spy(...args);
    }) as typeof spy);
    try {
      expect((await verify(token)).sub).toBe('u1');
      expect((await verify(token)).sub).toBe('u1');
      expect(verifications).toBe(1);
      now = 2000;
      await expect(verify(token)).rejects.toEqual(new TokenError('expired'));
    } finally {
      counting.mockRestore();
    }
  });

  it('refuses a cached token once its key is retired or replaced under the same kid', async () => {
    const keys = new Map([['k1', pair.publicKey]]);
    const verify = cachedTokenVerifier(async (kid) => keys.get(kid), { nowSeconds: () => 1500 });
    const token = sign(pair.privateKey, 'k1', {});
    await verify(token);
    keys.delete('k1');
    await expect(verify(token)).rejects.toEqual(new TokenError('unknown_key'));
    keys.set('k1', other.publicKey);
    await expect(verify(token)).rejects.toEqual(new TokenError('signature'));
    keys.set('k1', pair.publicKey);
    expect((await verify(token)).tid).toBe('t1');
  });

  it('never caches a refused token and reuses nothing for a token differing in one byte', async () => {
    const verify = cachedTokenVerifier(async () => pair.publicKey, { nowSeconds: () => 1500, maxEntries: 2 });
    const token = sign(pair.privateKey, 'k1', {});
    await verify(token);
    const forged = `${token.slice(0, token.lastIndexOf('.'))}.${sign(other.privateKey, 'k1', {}).split('.')[2]}`;
    await expect(verify(forged)).rejects.toEqual(new TokenError('signature'));
    await expect(verify(forged)).rejects.toEqual(new TokenError('signature'));
    // More tokens than entries: the oldest are forgotten, every one still verifies.
    for (const sub of ['a', 'b', 'c']) expect((await verify(sign(pair.privateKey, 'k1', { sub }))).sub).toBe(sub);
    expect((await verify(token)).sub).toBe('u1');
  });
});
