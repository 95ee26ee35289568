import crypto from 'node:crypto';
import { insecureClient, Role, unary } from '@iot-mesh/runtime';
import { ApiKeyServiceClient } from '../gen/ts/iot/signing/v1/api_keys';
import { AuditServiceClient } from '../gen/ts/iot/signing/v1/audit';
import { AuthServiceClient } from '../gen/ts/iot/signing/v1/auth';
import { TenantServiceClient } from '../gen/ts/iot/signing/v1/tenants';
import { UserServiceClient } from '../gen/ts/iot/signing/v1/users';
import { jwksHttpPort, signingService, signingEnv } from '@iot-mesh/signing';
import { createTestDatabase, TestDatabase } from './postgres';
import { startTestService, TestService } from './services';

/** A user of a test tenant, logged in. */
export interface TestUser {
  userId: string;
  email: string;
  /** Random per user; there is no default password. */
  password: string;
  accessToken: string;
  refreshToken: string;
  /** `Bearer <accessToken>`, ready for `unary(..., { authorization })`. */
  authorization: string;
}

/** An API key made for a test tenant. */
export interface TestApiKey {
  id: string;
  secret: string;
  /** `ApiKey <secret>` */
  authorization: string;
}

/** Role names accepted by the helpers. */
export type TestRole = 'admin' | 'operator' | 'viewer';

/** A tenant with one user per role. */
export interface TestTenant {
  tenantId: string;
  tenantName: string;
  admin: TestUser;
  operator: TestUser;
  viewer: TestUser;
  /** Creates an API key of this tenant (made by its admin). */
  createApiKey(role?: TestRole, name?: string): Promise<TestApiKey>;
}

/** A signing service running in this process for a test file. */
export interface TestSigning {
  /** gRPC `127.0.0.1:<port>`: pass as SIGNING_ADDRESS / `signingAddress`. */
  address: string;
  /** Port of `GET /.well-known/jwks.json`. */
  httpPort: number;
  /** The bootstrap admin of the platform tenant (a platform admin). */
  platformAdmin: TestUser & { tenantId: string; tenantName: string };
  /** The bootstrap token the service was configured with. */
  bootstrapToken: string;
  /** A new tenant (default name random) with an admin, an operator and a viewer, all logged in. */
  createTenant(name?: string): Promise<TestTenant>;
  /** Logs a user in again (fresh tokens). */
  login(tenantName: string, email: string, password: string): Promise<TestUser>;
  clients: { auth: AuthServiceClient; tenants: TenantServiceClient; users: UserServiceClient; apiKeys: ApiKeyServiceClient; audit: AuditServiceClient };
  service: TestService<typeof signingEnv>;
  database: TestDatabase;
  stop(): Promise<void>;
}

/** Options of {@link startSigningForTest}. */
export interface StartSigningOptions {
  /** Extra or overriding environment (e.g. SIGNING_ACCESS_TOKEN_TTL_SECONDS, LOG_LEVEL). */
  env?: Record<string, string>;
}

const ROLE: Record<TestRole, Role> = { admin: Role.ROLE_ADMIN, operator: Role.ROLE_OPERATOR, viewer: Role.ROLE_VIEWER };

function randomPassword(): string {
  return `pw-${crypto.randomBytes(18).toString('base64url')}`;
}

/**
 * Starts a real signing service in-process on a free port with its own test
 * database, the test run's Redis (keys under a random prefix) and NATS
 * (testing/test-services.ts), bootstraps the platform
 * tenant and returns helpers to create tenants and API keys. Call `stop()`
 * in `afterAll`.
 */
export async function startSigningForTest(options: StartSigningOptions = {}): Promise<TestSigning> {
  const database = await createTestDatabase('iot_signing_test');
  const bootstrapToken = crypto.randomBytes(32).toString('base64url');
  let service: TestService<typeof signingEnv>;
  try {
    service = await startTestService(signingService, {
      DATABASE_URL: database.url,
      // Bound by the service itself and read back: no port is picked for it.
      SIGNING_HTTP_PORT: '0',
      SIGNING_BOOTSTRAP_TOKEN: bootstrapToken,
      SIGNING_KEY_ENCRYPTION_KEY: crypto.randomBytes(32).toString('base64url'),
      SIGNING_REDIS_PREFIX: `iot:test:signing:${crypto.randomBytes(6).toString('hex')}:`,
      SIGNING_KEY_ACTIVATION_DELAY_MS: '0',
      SIGNING_KEY_RETIRE_GRACE_MS: '0',
      // The cheapest allowed scrypt cost: many tests log in many users on a shared machine.
      SIGNING_PASSWORD_HASH_COST: '12',
      ...options.env,
    });
  } catch (err) {
    await database.drop();
    throw err;
  }
  const address = service.address;
  const httpPort = jwksHttpPort(service.ctx);
  const clients = {
    auth: insecureClient(AuthServiceClient, address),
    tenants: insecureClient(TenantServiceClient, address),
    users: insecureClient(UserServiceClient, address),
    apiKeys: insecureClient(ApiKeyServiceClient, address),
    audit: insecureClient(AuditServiceClient, address),
  };

  async function login(tenantName: string, email: string, password: string): Promise<TestUser> {
    const res = await unary(clients.auth, clients.auth.login, { tenant: tenantName, email, password });
    const accessToken = res.tokens!.accessToken;
    return { userId: res.user!.id, email, password, accessToken, refreshToken: res.tokens!.refreshToken, authorization: `Bearer ${accessToken}` };
  }

  const platformPassword = randomPassword();
  const platformEmail = 'platform-admin@example.test';
  const boot = await unary(clients.auth, clients.auth.bootstrap, {
    bootstrapToken,
    tenantName: 'platform',
    adminEmail: platformEmail,
    adminPassword: platformPassword,
    adminDisplayName: 'Platform Admin',
  });
  const platformAdmin = { ...(await login('platform', platformEmail, platformPassword)), tenantId: boot.tenant!.id, tenantName: 'platform' };

  /** The platform admin's authorization, logging in again when the token is about to expire (short TTLs in tests). */
  async function platformAuthorization(): Promise<string> {
    const exp = JSON.parse(Buffer.from(platformAdmin.accessToken.split('.')[1], 'base64url').toString()).exp as number;
    if (exp * 1000 - Date.now() < 5000) Object.assign(platformAdmin, await login('platform', platformEmail, platformPassword));
    return platformAdmin.authorization;
  }

  async function createTenant(name = `t-${crypto.randomBytes(5).toString('hex')}`): Promise<TestTenant> {
    const adminEmail = `admin@${name}.example.test`;
    const adminPassword = randomPassword();
    const created = await unary(
      clients.tenants,
      clients.tenants.createTenant,
      { name, adminEmail, adminPassword, adminDisplayName: 'Admin' },
      { authorization: await platformAuthorization() },
    );
    const admin = await login(name, adminEmail, adminPassword);
    const makeUser = async (role: TestRole): Promise<TestUser> => {
      const email = `${role}@${name}.example.test`;
      const password = randomPassword();
      await unary(clients.users, clients.users.createUser, { email, displayName: role, password, role: ROLE[role] }, { authorization: admin.authorization });
      return login(name, email, password);
    };
    const [operator, viewer] = await Promise.all([makeUser('operator'), makeUser('viewer')]);
    return {
      tenantId: created.tenant!.id,
      tenantName: name,
      admin,
      operator,
      viewer,
      async createApiKey(role: TestRole = 'operator', keyName = `${role}-key`) {
        const res = await unary(clients.apiKeys, clients.apiKeys.createApiKey, { name: keyName, role: ROLE[role] }, { authorization: admin.authorization });
        return { id: res.apiKey!.id, secret: res.secret, authorization: `ApiKey ${res.secret}` };
      },
    };
  }

  let stopped: Promise<void> | undefined;
  return {
    address,
    httpPort,
    platformAdmin,
    bootstrapToken,
    createTenant,
    login,
    clients,
    service,
    database,
    stop: () =>
      (stopped ??= (async () => {
        Object.values(clients).forEach((c) => c.close());
        await service.stop();
        await database.drop();
      })()),
  };
}
