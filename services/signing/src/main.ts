import { createAuthMiddleware, DEFAULT_GRPC_PORTS, repoPath, runService, ServiceContext, ServiceSpec, singleFlightApiKeyLookup } from '@iot-mesh/runtime';
import { apiKeyService } from './api/api-keys';
import { auditService } from './api/audit';
import { authService } from './api/auth';
import { startJwksHttpServer } from './api/jwks-http';
import { tenantService } from './api/tenants';
import { userService } from './api/users';
import { signingEnv } from './config';
import { ApiKeys } from './domain/api-keys';
import { AuditTrail } from './domain/audit';
import { Sessions } from './domain/sessions';
import { SigningKeys } from './domain/signing-keys';
import { Tenants } from './domain/tenants';
import { LoginThrottle } from './domain/throttle';
import { Users } from './domain/users';
import { NatsAuditPublisher } from './events/audit-events';
import { KeyEncryption } from './store/key-encryption';
import { postgresSigningStore } from './store/signing-store';
import { PostgresSigningKeyRepository } from './store/signing-keys';
import { RedisThrottleCounters } from './store/throttle-counters';

export { signingEnv };

/** The JWKS HTTP port each started signing service bound, by its context (SIGNING_HTTP_PORT=0 binds any free port). */
const jwksPorts = new WeakMap<ServiceContext<typeof signingEnv>, number>();

/**
 * The port the JWKS HTTP server of the signing service started with `ctx`
 * bound (an in-process test reads it here; a process logs it as `http listening`).
 */
export function jwksHttpPort(ctx: ServiceContext<typeof signingEnv>): number {
  const port = jwksPorts.get(ctx);
  if (port === undefined) throw new Error('this signing service has not started its JWKS HTTP server');
  return port;
}

/** The signing service: tenants, users, roles, tokens, API keys. */
export const signingService: ServiceSpec<typeof signingEnv> = {
  name: 'signing',
  env: signingEnv,
  defaultPort: DEFAULT_GRPC_PORTS.signing,
  uses: { postgres: { migrations: repoPath('services', 'signing', 'migrations') }, redis: true, nats: true },
  async build(ctx) {
    const { config, log, pool, redis, nats } = ctx;
    const store = postgresSigningStore(pool);
    const audit = new AuditTrail(store, new NatsAuditPublisher(nats, log), log);
    const throttle = new LoginThrottle(
      new RedisThrottleCounters(redis, config.SIGNING_REDIS_PREFIX),
      {
        accountFreeAttempts: config.SIGNING_LOGIN_ACCOUNT_FREE_ATTEMPTS,
        addressFreeAttempts: config.SIGNING_LOGIN_ADDRESS_FREE_ATTEMPTS,
        baseDelayMs: config.SIGNING_LOGIN_BACKOFF_BASE_MS,
        maxDelayMs: config.SIGNING_LOGIN_BACKOFF_MAX_MS,
        windowMs: config.SIGNING_LOGIN_WINDOW_MS,
      },
      log,
    );

    if (!config.SIGNING_KEY_ENCRYPTION_KEY) log.warn('SIGNING_KEY_ENCRYPTION_KEY is not set: signing keys are stored unencrypted');
    const encryption = config.SIGNING_KEY_ENCRYPTION_KEY ? new KeyEncryption(config.SIGNING_KEY_ENCRYPTION_KEY) : undefined;
    const keys = new SigningKeys(
      new PostgresSigningKeyRepository(pool, encryption),
      {
        accessTokenTtlMs: config.SIGNING_ACCESS_TOKEN_TTL_SECONDS * 1000,
        activationDelayMs: config.SIGNING_KEY_ACTIVATION_DELAY_MS,
        retireGraceMs: config.SIGNING_KEY_RETIRE_GRACE_MS,
      },
      audit,
      log,
    );
    await keys.ensureSigningKey();

    const passwordCost = config.SIGNING_PASSWORD_HASH_COST;
    const sessions = new Sessions(
      store,
      keys,
      throttle,
      audit,
      { accessTokenTtlSeconds: config.SIGNING_ACCESS_TOKEN_TTL_SECONDS, refreshTokenTtlSeconds: config.SIGNING_REFRESH_TOKEN_TTL_SECONDS, passwordCost },
      log,
    );
    const tenants = new Tenants(store, throttle, audit, { bootstrapToken: config.SIGNING_BOOTSTRAP_TOKEN, passwordCost }, log);
    const users = new Users(store, throttle, audit, { passwordCost });
    const apiKeys = new ApiKeys(store, audit, log);

    // Signing verifies callers like every service, but against its own key set and API-key table.
    // Concurrent calls with one key (a client opening many at once) share one lookup and one use note.
    const auth = createAuthMiddleware({ keySource: keys, apiKeys: singleFlightApiKeyLookup((secret) => apiKeys.principalOf(secret)), log });
    const http = await startJwksHttpServer(config.GRPC_HOST, config.SIGNING_HTTP_PORT, () => keys.publishedKeys(), log);
    jwksPorts.set(ctx, http.port);
    if (!config.SIGNING_BOOTSTRAP_TOKEN) log.info('SIGNING_BOOTSTRAP_TOKEN is not set: AuthService.Bootstrap is disabled');

    const origin = { trustForwardedFor: config.SIGNING_TRUST_FORWARDED_FOR };
    return {
      services: [
        authService({ sessions, tenants, keys }, origin),
        tenantService(tenants, origin),
        userService(users, origin),
        apiKeyService(apiKeys, origin),
        auditService(audit),
      ],
      middlewares: [auth],
      stop: () => http.close(),
    };
  },
};

if (require.main === module) runService(signingService);
