import crypto from 'node:crypto';
import { promisify } from 'node:util';

const scrypt = promisify(crypto.scrypt) as (password: crypto.BinaryLike, salt: crypto.BinaryLike, keylen: number, options: crypto.ScryptOptions) => Promise<Buffer>;

/** Default scrypt cost, as log2(N): OWASP's N=2^17, r=8, p=1 (2^17 × 8 × 128 B = 128 MiB of memory per hash). */
export const DEFAULT_PASSWORD_COST = 17;
const BLOCK = { r: 8, p: 1 };
const KEY_LENGTH = 32;
const MAX_MEMORY = 512 * 1024 * 1024;

export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 256;

const COMMON = new Set(['password1234', '123456789012', 'qwertyuiopas', 'passwordpassword', 'letmeinletmein', 'administrator', 'changemechangeme']);

/** Why a new password is refused, in words for the user; undefined when it is acceptable. */
export function passwordWeakness(password: string, email = ''): string | undefined {
  if (password.length < PASSWORD_MIN_LENGTH) return `must be at least ${PASSWORD_MIN_LENGTH} characters`;
  if (password.length > PASSWORD_MAX_LENGTH) return `must be at most ${PASSWORD_MAX_LENGTH} characters`;
  if (new Set(password).size < 5) return 'must use at least 5 different characters';
  if (COMMON.has(password.toLowerCase())) return 'is a commonly used password';
  const local = email.split('@')[0]?.toLowerCase();
  if (local && local.length >= 4 && password.toLowerCase().includes(local)) return 'must not contain the email address';
  return undefined;
}

/**
 * A memory-hard hash with a fresh random salt: `scrypt$N$r$p$salt$hash`
 * (base64url). The cost is stored with the hash, so changing it later only
 * affects new hashes.
 */
export async function hashPassword(password: string, cost = DEFAULT_PASSWORD_COST): Promise<string> {
  const salt = crypto.randomBytes(16);
  const N = 2 ** cost;
  const hash = await scrypt(password.normalize('NFKC'), salt, KEY_LENGTH, { N, ...BLOCK, maxmem: MAX_MEMORY });
  return ['scrypt', N, BLOCK.r, BLOCK.p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

/** Checks a password against a stored hash in constant time. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  const salt = Buffer.from(parts[4], 'base64url');
  const expected = Buffer.from(parts[5], 'base64url');
  const actual = await scrypt(password.normalize('NFKC'), salt, expected.length, { N, r, p, maxmem: MAX_MEMORY });
  return crypto.timingSafeEqual(actual, expected);
}

const dummyHashes = new Map<number, Promise<string>>();

/** Spends the same time as a real check, so unknown accounts cannot be told apart by timing. */
export async function verifyAgainstNothing(password: string, cost = DEFAULT_PASSWORD_COST): Promise<false> {
  let dummy = dummyHashes.get(cost);
  if (!dummy) dummyHashes.set(cost, (dummy = hashPassword(crypto.randomBytes(24).toString('base64url'), cost)));
  await verifyPassword(password, await dummy);
  return false;
}
