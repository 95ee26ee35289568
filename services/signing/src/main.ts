import { z } from 'zod';
import { createAuthMiddleware, env, repoPath, runService, ServiceSpec } from '@iot-mesh/runtime';
import { AuditLog } from './audit';
import { signingRegistrations } from './grpc';
import { startJwksHttpServer } from './http';
import { KeyEncryption } from './keys/key-encryption';
import { SigningKeyStore } from './keys/key-store';
import { IdentityService } from './service';
import { DEFAULT_PASSWORD_COST } from './passwords';
import { LoginThrottle } from './throttle';

const nonNegativeInt = (fallback: number) =>
  z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(0, 'must not be negative').default(fallback);

/** Configuration of the signing service (see the README's table). */
export const signingEnv = {
  /** Secret needed by AuthService.Bootstrap; bootstrap is off without it. No default on purpose. */
  SIGNING_BOOTSTRAP_TOKEN: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Encrypts signing keys at rest (AES-256-GCM via HKDF); keys are stored unencrypted without it (logged). */
  SIGNING_KEY_ENCRYPTION_KEY: z.string().min(32, 'must be at least 32 characters').optional(),
  SIGNING_HTTP_PORT: env.port(8081),
  SIGNING_ACCESS_TOKEN_TTL_SECONDS: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1, 'must be at least 1').max(900, 'must be at most 900 (15 minutes)').default(900),
  SIGNING_REFRESH_TOKEN_TTL_SECONDS: env.positiveInt(30 * 24 * 3600),
  /** scrypt cost of new password hashes as log2(N): 15 = 32 MiB per hash. */
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

/** The signing service: tenants, users, roles, tokens, API keys. */
export const signingService: ServiceSpec<typeof signingEnv> = {
  name: 'signing',
  env: signingEnv,
  defaultPort: 50051,
  uses: { postgres: { migrations: repoPath('services', 'signing', 'migrations') }, redis: true, nats: true },
  async build({ config, log, pool, redis, nats }) {
    const keys = new SigningKeyStore(
      pool,
      {
        accessTokenTtlMs: config.SIGNING_ACCESS_TOKEN_TTL_SECONDS * 1000,
        activationDelayMs: config.SIGNING_KEY_ACTIVATION_DELAY_MS,
        retireGraceMs: config.SIGNING_KEY_RETIRE_GRACE_MS,
      },
      config.SIGNING_KEY_ENCRYPTION_KEY ? new KeyEncryption(config.SIGNING_KEY_ENCRYPTION_KEY) : undefined,
      log,
    );
    await keys.ensureSigningKey();
    const throttle = new LoginThrottle(
      redis,
      {
        accountFreeAttempts: config.SIGNING_LOGIN_ACCOUNT_FREE_ATTEMPTS,
        addressFreeAttempts: config.SIGNING_LOGIN_ADDRESS_FREE_ATTEMPTS,
        baseDelayMs: config.SIGNING_LOGIN_BACKOFF_BASE_MS,
        maxDelayMs: config.SIGNING_LOGIN_BACKOFF_MAX_MS,
        windowMs: config.SIGNING_LOGIN_WINDOW_MS,
        prefix: config.SIGNING_REDIS_PREFIX,
      },
      log,
    );
    const identity = new IdentityService(
      pool,
      keys,
      throttle,
      new AuditLog(pool, nats, log),
      {
        bootstrapToken: config.SIGNING_BOOTSTRAP_TOKEN,
        accessTokenTtlSeconds: config.SIGNING_ACCESS_TOKEN_TTL_SECONDS,
        refreshTokenTtlSeconds: config.SIGNING_REFRESH_TOKEN_TTL_SECONDS,
        passwordCost: config.SIGNING_PASSWORD_HASH_COST,
      },
      log,
    );
    // Signing verifies callers like every service, but against its own key store and API-key table.
    const auth = createAuthMiddleware({ keySource: keys, apiKeys: (secret) => identity.principalOfApiKey(secret), log });
    const http = await startJwksHttpServer(config.GRPC_HOST, config.SIGNING_HTTP_PORT, () => keys.publishedKeys(), log);
    if (!config.SIGNING_BOOTSTRAP_TOKEN) log.info('SIGNING_BOOTSTRAP_TOKEN is not set: AuthService.Bootstrap is disabled');
    return {
      services: signingRegistrations(identity, { trustForwardedFor: config.SIGNING_TRUST_FORWARDED_FOR }),
      middlewares: [auth],
      stop: () => http.close(),
    };
  },
};

if (require.main === module) runService(signingService);
