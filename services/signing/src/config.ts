import { z } from 'zod';
import { env } from '@iot-mesh/runtime';
import { DEFAULT_PASSWORD_COST } from './domain/passwords';

const nonNegativeInt = (fallback: number) =>
  z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(0, 'must not be negative').default(fallback);

/** Configuration of the signing service (see the README's table), validated at start. */
export const signingEnv = {
  /** Secret needed by AuthService.Bootstrap; bootstrap is off without it. No default on purpose. */
  SIGNING_BOOTSTRAP_TOKEN: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Encrypts signing keys at rest (AES-256-GCM via HKDF); keys are stored unencrypted without it (logged). */
  SIGNING_KEY_ENCRYPTION_KEY: z.string().min(32, 'must be at least 32 characters').optional(),
  SIGNING_HTTP_PORT: env.port(8081),
  SIGNING_ACCESS_TOKEN_TTL_SECONDS: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1, 'must be at least 1').max(900, 'must be at most 900 (15 minutes)').default(900),
  SIGNING_REFRESH_TOKEN_TTL_SECONDS: env.positiveInt(30 * 24 * 3600),
  /** scrypt cost of new password hashes as log2(N): 17 (OWASP) = 128 MiB per hash; tests use 12. */
  SIGNING_PASSWORD_HASH_COST: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(12, 'must be at least 12').max(18, 'must be at most 18').default(DEFAULT_PASSWORD_COST),
  SIGNING_KEY_ACTIVATION_DELAY_MS: nonNegativeInt(60_000),
  SIGNING_KEY_RETIRE_GRACE_MS: nonNegativeInt(60_000),
  SIGNING_LOGIN_ACCOUNT_FREE_ATTEMPTS: nonNegativeInt(5),
  SIGNING_LOGIN_ADDRESS_FREE_ATTEMPTS: nonNegativeInt(20),
  SIGNING_LOGIN_BACKOFF_BASE_MS: env.positiveInt(1000),
  SIGNING_LOGIN_BACKOFF_MAX_MS: env.positiveInt(15 * 60_000),
  SIGNING_LOGIN_WINDOW_MS: env.positiveInt(15 * 60_000),
  SIGNING_REDIS_PREFIX: env.string({ fallback: 'iot:signing:' }),
  SIGNING_TRUST_FORWARDED_FOR: env.bool(false),
};
