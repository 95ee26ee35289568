import crypto from 'node:crypto';

/** SHA-256 of a high-entropy secret (refresh token, API key): what the database stores. */
export function secretDigest(secret: string): Buffer {
  return crypto.createHash('sha256').update(secret, 'utf8').digest();
}

/** Compares two strings in constant time (through their digests, so lengths do not leak). */
export function secretsEqual(a: string, b: string): boolean {
  return crypto.timingSafeEqual(secretDigest(a), secretDigest(b));
}

/** A new opaque refresh token. */
export function newRefreshToken(): string {
  return `rt_${crypto.randomBytes(32).toString('base64url')}`;
}

/** A new API key secret and the prefix shown in lists. */
export function newApiKeySecret(): { secret: string; prefix: string } {
  const secret = `iotk_${crypto.randomBytes(32).toString('base64url')}`;
  return { secret, prefix: secret.slice(0, 13) };
}
