import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { Role, insecureClient, repoPath, unary } from '@iot-mesh/runtime';
import { ApiKeyServiceClient } from '../../../gen/ts/iot/signing/v1/api_keys';
import { AuthServiceClient } from '../../../gen/ts/iot/signing/v1/auth';
import { TenantServiceClient } from '../../../gen/ts/iot/signing/v1/tenants';
import { UserServiceClient } from '../../../gen/ts/iot/signing/v1/users';
import { waitForReportedPort } from '../../../scripts/reported-port';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { testServiceEnv } from '../../../testing/test-services';
import { codeOf } from './support/grpc-errors';
import { currentSigningKey, forge, claimsFor } from './support/tokens';

/**
 * Runs signing as its own process at the most verbose log level, drives every
 * flow that handles a secret through it, and searches everything it printed
 * for any of those secrets.
 */
let database: TestDatabase;
let child: ChildProcess;
let output = '';
const secrets = new Set<string>();
const remember = (...values: string[]) => values.forEach((v) => v && secrets.add(v));

const bootstrapToken = crypto.randomBytes(32).toString('base64url');
const encryptionKey = crypto.randomBytes(32).toString('base64url');

beforeAll(async () => {
  database = await createTestDatabase('iot_signing_logs');
  child = spawn(process.execPath, ['--import', 'tsx', repoPath('services', 'signing', 'src', 'main.ts')], {
    cwd: repoPath(),
    env: {
      PATH: process.env.PATH,
      ...testServiceEnv(),
      LOG_LEVEL: 'trace',
      // Both bound by the child and read back from its log: no port is picked for it.
      GRPC_PORT: '0',
      SIGNING_HTTP_PORT: '0',
      DATABASE_URL: database.url,
      SIGNING_BOOTSTRAP_TOKEN: bootstrapToken,
      SIGNING_KEY_ENCRYPTION_KEY: encryptionKey,
      SIGNING_REDIS_PREFIX: `iot:test:signing-logs:${crypto.randomBytes(4).toString('hex')}:`,
      SIGNING_KEY_ACTIVATION_DELAY_MS: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  remember(bootstrapToken, encryptionKey);
  const grpcPort = await waitForReportedPort(() => output, 'grpc listening', { timeoutMs: 25_000, failed: () => (child.exitCode !== null ? `signing exited (${child.exitCode}):\n${output}` : undefined) });
  address = `127.0.0.1:${grpcPort}`;
}, 30000);

let address: string;

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGKILL');
  }
  await database?.drop();
});

test('the logs of a full run contain no password, token or key', async () => {
  const auth = insecureClient(AuthServiceClient, address);
  const tenants = insecureClient(TenantServiceClient, address);
  const users = insecureClient(UserServiceClient, address);
  const apiKeys = insecureClient(ApiKeyServiceClient, address);
  try {
    // Wait until the process serves.
    for (let i = 0; ; i++) {
      if ((await codeOf(unary(auth, auth.getJwks, {}, { deadlineMs: 1000 }))) === 0) break;
      if (i > 120 || child.exitCode !== null) throw new Error(`signing did not start:\n${output}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const adminPassword = `boot-${crypto.randomBytes(12).toString('hex')}`;
    remember(adminPassword);
    await unary(auth, auth.bootstrap, { bootstrapToken, tenantName: 'platform', adminEmail: 'root@example.test', adminPassword, adminDisplayName: 'Root' });
    expect(await codeOf(unary(auth, auth.bootstrap, { bootstrapToken: `${bootstrapToken}x`, tenantName: 'platform', adminEmail: 'root@example.test', adminPassword, adminDisplayName: '' }))).toBe(16);

    const wrongPassword = `wrong-${crypto.randomBytes(12).toString('hex')}`;
    remember(wrongPassword);
    expect(await codeOf(unary(auth, auth.login, { tenant: 'platform', email: 'root@example.test', password: wrongPassword }))).toBe(16);
    const root = (await unary(auth, auth.login, { tenant: 'platform', email: 'root@example.test', password: adminPassword })).tokens!;
    remember(root.accessToken, root.refreshToken);
    const asRoot = { authorization: `Bearer ${root.accessToken}` };

    const tenantAdminPassword = `ta-${crypto.randomBytes(12).toString('hex')}`;
    remember(tenantAdminPassword);
    await unary(tenants, tenants.createTenant, { name: 'acme', adminEmail: 'admin@acme.test', adminPassword: tenantAdminPassword, adminDisplayName: '' }, asRoot);
    const admin = (await unary(auth, auth.login, { tenant: 'acme', email: 'admin@acme.test', password: tenantAdminPassword })).tokens!;
    remember(admin.accessToken, admin.refreshToken);
    const asAdmin = { authorization: `Bearer ${admin.accessToken}` };

    const userPassword = `user-${crypto.randomBytes(12).toString('hex')}`;
    const newPassword = `new-${crypto.randomBytes(12).toString('hex')}`;
    remember(userPassword, newPassword);
    await unary(users, users.createUser, { email: 'op@acme.test', displayName: '', password: userPassword, role: Role.ROLE_OPERATOR }, asAdmin);
    const op = (await unary(auth, auth.login, { tenant: 'acme', email: 'op@acme.test', password: userPassword })).tokens!;
    const refreshed = (await unary(auth, auth.refresh, { refreshToken: op.refreshToken })).tokens!;
    remember(op.accessToken, op.refreshToken, refreshed.accessToken, refreshed.refreshToken);
    expect(await codeOf(unary(auth, auth.refresh, { refreshToken: op.refreshToken }))).toBe(16);
    await unary(users, users.changePassword, { currentPassword: userPassword, newPassword }, { authorization: `Bearer ${refreshed.accessToken}` });
    expect(await codeOf(unary(users, users.changePassword, { currentPassword: userPassword, newPassword: `${newPassword}2` }, { authorization: `Bearer ${refreshed.accessToken}` }))).toBe(7);
    await unary(auth, auth.logout, { refreshToken: admin.refreshToken });

    const key = await unary(apiKeys, apiKeys.createApiKey, { name: 'bot', role: Role.ROLE_VIEWER }, asAdmin);
    remember(key.secret);
    await unary(auth, auth.whoAmI, {}, { authorization: `ApiKey ${key.secret}` });
    await unary(apiKeys, apiKeys.revokeApiKey, { id: key.apiKey!.id }, asAdmin);
    expect(await codeOf(unary(auth, auth.whoAmI, {}, { authorization: `ApiKey ${key.secret}` }))).toBe(16);

    const signingKey = await currentSigningKey(database.url, encryptionKey);
    const jwk = signingKey.privateKey.export({ format: 'jwk' }) as { d: string };
    remember(jwk.d, signingKey.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'));
    const forged = forge.none(claimsFor({ sub: 'x', tid: 'y' }), signingKey.kid);
    const tampered = forge.tampered(admin.accessToken, { role: 'admin', pa: true });
    remember(forged, tampered);
    expect(await codeOf(unary(auth, auth.whoAmI, {}, { authorization: `Bearer ${forged}` }))).toBe(16);
    expect(await codeOf(unary(auth, auth.whoAmI, {}, { authorization: `Bearer ${tampered}` }))).toBe(16);
    await unary(auth, auth.rotateSigningKey, {}, asRoot);
  } finally {
    [auth, tenants, users, apiKeys].forEach((c) => c.close());
  }

  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);

  // The run was logged verbosely (so the check below has something to search)...
  const lines = output.split('\n').filter((l) => l.startsWith('{'));
  expect(lines.length).toBeGreaterThan(10);
  expect(output).toContain('access token rejected');
  // ...and no secret, nor any part of a token or key, appears in it.
  const leaks: string[] = [];
  for (const secret of secrets) {
    const parts = secret.includes('.') ? secret.split('.').filter((p) => p.length >= 16) : [secret];
    for (const part of [secret, ...parts]) if (output.includes(part)) leaks.push(`${part.slice(0, 8)}…`);
    if (secret.startsWith('iotk_') && output.includes(secret.slice(13))) leaks.push('api key body');
    if (secret.startsWith('rt_') && output.includes(secret.slice(3))) leaks.push('refresh token body');
  }
  expect(leaks).toEqual([]);
}, 60000);
