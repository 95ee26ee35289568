import crypto from 'node:crypto';
import net from 'node:net';
import { status } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { Device, DeviceServiceClient } from '../../../gen/ts/iot/device/v1/device';
import { AuthMiddleware, createAuthMiddleware, createLogger, insecureClient, keyFromJwk, serverStream, unary } from '@iot-mesh/runtime';
import { signAccessToken } from '../src/domain/access-tokens';
import { startTestService, TestService } from '../../../testing/services';
import { startSigningForTest, TestSigning, TestTenant } from '../../../testing/signing';
import { TEST_REDIS_URL } from '../../../testing/test-services';
import { echoDeviceSpec } from './support/echo-service';
import { claimsFor, currentSigningKey, forge } from './support/tokens';

const encryptionKey = crypto.randomBytes(32).toString('hex');
const log = createLogger('auth-test', 'silent');
let signing: TestSigning;
let tenant: TestTenant;
let other: TestTenant;
let echo: TestService<{}>;
let devices: DeviceServiceClient;
const middlewares: AuthMiddleware[] = [];
/** The stand-in services hold no work worth waiting for at stop. */
const ECHO_ENV = { SHUTDOWN_GRACE_MS: '100' };
/**
 * Where signing is unreachable: a socket of ours that drops every connection
 * at once (a port picked free and released could be taken by then).
 */
const unreachable = net.createServer((socket) => socket.destroy());
let deadAddress: string;

function remoteAuth(options: Partial<Parameters<typeof createAuthMiddleware>[0]> = {}) {
  const middleware = createAuthMiddleware({ signingAddress: signing.address, log, jwks: { minRefreshIntervalMs: 0 }, ...options });
  middlewares.push(middleware);
  return middleware;
}

async function startEcho(options: Partial<Parameters<typeof createAuthMiddleware>[0]> = {}): Promise<{ service: TestService<{}>; client: DeviceServiceClient }> {
  const service = await startTestService(echoDeviceSpec(() => remoteAuth(options)), ECHO_ENV);
  return { service, client: insecureClient(DeviceServiceClient, service.address) };
}

function getDevice(authorization?: string, client = devices) {
  return unary(client, client.getDevice, { id: 'd1' }, { authorization });
}

async function codeOf(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
    return status.OK;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

beforeAll(async () => {
  signing = await startSigningForTest({ env: { SIGNING_KEY_ENCRYPTION_KEY: encryptionKey } });
  [tenant, other] = await Promise.all([signing.createTenant(), signing.createTenant()]);
  ({ service: echo, client: devices } = await startEcho());
  await new Promise<void>((resolve) => unreachable.listen(0, '127.0.0.1', resolve));
  deadAddress = `127.0.0.1:${(unreachable.address() as net.AddressInfo).port}`;
}, 60000);

afterAll(async () => {
  devices?.close();
  await echo?.stop();
  middlewares.forEach((m) => m.close());
  await signing?.stop();
  unreachable.close();
});

describe('another service verifying callers with the shared middleware', () => {
  test('a valid access token puts the caller and its tenant into the context', async () => {
    const res = await getDevice(tenant.viewer.authorization);
    expect(res.device?.tenantId).toBe(tenant.tenantId);
    expect(res.device?.name).toBe(tenant.viewer.userId);
    expect(res.device?.type).toBe('user');
  });

  test('missing, malformed and unknown-scheme credentials are UNAUTHENTICATED', async () => {
    expect(await codeOf(getDevice(undefined))).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(getDevice('Bearer not-a-jwt'))).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(getDevice('Basic dXNlcjpwYXNz'))).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(getDevice(tenant.viewer.accessToken))).toBe(status.UNAUTHENTICATED);
  });

  test('the role table is enforced: a viewer may read but not write, an operator may write', async () => {
    const create = (authorization: string) => unary(devices, devices.createDevice, { device: Device.fromPartial({ name: 'x' }) }, { authorization });
    expect(await codeOf(create(tenant.viewer.authorization))).toBe(status.PERMISSION_DENIED);
    const created = await create(tenant.operator.authorization);
    expect(created.device?.tenantId).toBe(tenant.tenantId);
    expect(await codeOf(create(tenant.admin.authorization))).toBe(status.OK);
  });

  test('server streams are guarded the same way', async () => {
    const open = (authorization?: string) =>
      new Promise<number>((resolve) => {
        const stream = serverStream(devices, devices.watchDevices, { deviceIds: [], labels: {}, changesOnly: false }, { authorization });
        stream.on('data', () => undefined);
        stream.on('error', (err: { code: number }) => resolve(err.code));
        stream.on('end', () => resolve(status.OK));
      });
    expect(await open()).toBe(status.UNAUTHENTICATED);
    expect(await open('Bearer x.y.z')).toBe(status.UNAUTHENTICATED);
    // Past the middleware: the stand-in handler answers FAILED_PRECONDITION.
    expect(await open(tenant.viewer.authorization)).toBe(status.FAILED_PRECONDITION);
  });

  test('a method without a rule is refused', async () => {
    const { service, client } = await startEcho({ rules: { 'iot.device.v1.DeviceService': { CreateDevice: 'operator' } } });
    try {
      expect(await codeOf(getDevice(tenant.admin.authorization, client))).toBe(status.PERMISSION_DENIED);
    } finally {
      client.close();
      await service.stop();
    }
  });

  describe('forged and invalid tokens are rejected, here and at signing', () => {
    let kid: string;
    let publicKey: crypto.KeyObject;
    let privateKey: crypto.KeyObject;

    beforeAll(async () => {
      ({ kid, privateKey } = await currentSigningKey(signing.database.url, encryptionKey));
      publicKey = crypto.createPublicKey(privateKey);
    });

    const expectRejected = async (token: string) => {
      expect(await codeOf(getDevice(`Bearer ${token}`))).toBe(status.UNAUTHENTICATED);
      expect(await codeOf(unary(signing.clients.auth, signing.clients.auth.whoAmI, {}, { authorization: `Bearer ${token}` }))).toBe(status.UNAUTHENTICATED);
    };
    const user = () => ({ sub: tenant.viewer.userId, tid: tenant.tenantId });

    test('a token signed with the real key is accepted (the forgeries below differ only in one thing)', async () => {
      const token = signAccessToken(claimsFor(user()), privateKey, kid);
      expect((await getDevice(`Bearer ${token}`)).device?.tenantId).toBe(tenant.tenantId);
    });

    test('expired', async () => {
      await expectRejected(signAccessToken(claimsFor(user(), { iat: 1000, exp: Math.floor(Date.now() / 1000) - 1 }), privateKey, kid));
    });

    test('tampered payload (role raised to admin)', async () => {
      await expectRejected(forge.tampered(tenant.viewer.accessToken, { role: 'admin' }));
      await expectRejected(forge.tampered(tenant.viewer.accessToken, { tid: other.tenantId }));
    });

    test('wrong kid', async () => {
      await expectRejected(signAccessToken(claimsFor(user()), privateKey, 'no-such-key'));
    });

    test('signed by a key that was never published, under the real kid', async () => {
      await expectRejected(forge.foreignKey(claimsFor(user()), kid));
    });

    test('alg none', async () => {
      await expectRejected(forge.none(claimsFor(user()), kid));
    });

    test('HS256 with the public key as the HMAC secret', async () => {
      await expectRejected(forge.hs256WithPublicKey(claimsFor(user()), kid, publicKey, 'pem'));
      await expectRejected(forge.hs256WithPublicKey(claimsFor(user()), kid, publicKey, 'jwk'));
    });

    test('wrong issuer or audience', async () => {
      await expectRejected(signAccessToken(claimsFor(user(), { iss: 'someone-else' }), privateKey, kid));
      await expectRejected(signAccessToken(claimsFor(user(), { aud: 'another-mesh' }), privateKey, kid));
    });
  });

  test('API keys are resolved through signing and cached; revocation takes effect when the cache expires', async () => {
    const { service, client } = await startEcho({ apiKeyCacheMs: 300 });
    try {
      const key = await tenant.createApiKey('viewer', 'cache-test');
      const res = await getDevice(key.authorization, client);
      expect(res.device?.tenantId).toBe(tenant.tenantId);
      expect(res.device?.type).toBe('api_key');
      const create = unary(client, client.createDevice, { device: Device.fromPartial({ name: 'x' }) }, { authorization: key.authorization });
      expect(await codeOf(create)).toBe(status.PERMISSION_DENIED);

      await unary(signing.clients.apiKeys, signing.clients.apiKeys.revokeApiKey, { id: key.id }, { authorization: tenant.admin.authorization });
      // Signing itself refuses the key at once.
      expect(await codeOf(unary(signing.clients.auth, signing.clients.auth.whoAmI, {}, { authorization: key.authorization }))).toBe(status.UNAUTHENTICATED);
      await new Promise((r) => setTimeout(r, 400));
      expect(await codeOf(getDevice(key.authorization, client))).toBe(status.UNAUTHENTICATED);
      expect(await codeOf(getDevice('ApiKey iotk_made-up', client))).toBe(status.UNAUTHENTICATED);
    } finally {
      client.close();
      await service.stop();
    }
  });

  test('a rotated key is fetched when a token names it; tokens of the old key keep working', async () => {
    const before = tenant.operator.authorization;
    expect((await getDevice(before)).device?.tenantId).toBe(tenant.tenantId);
    const rotated = await unary(signing.clients.auth, signing.clients.auth.rotateSigningKey, {}, { authorization: signing.platformAdmin.authorization });
    const fresh = await signing.login(tenant.tenantName, tenant.operator.email, tenant.operator.password);
    const header = JSON.parse(Buffer.from(fresh.accessToken.split('.')[0], 'base64url').toString());
    expect(header.kid).toBe(rotated.kid);
    expect((await getDevice(fresh.authorization)).device?.tenantId).toBe(tenant.tenantId);
    expect((await getDevice(before)).device?.tenantId).toBe(tenant.tenantId);
  });

  test('without a reachable signing service and no cached keys, calls are UNAVAILABLE, not UNAUTHENTICATED', async () => {
    const service = await startTestService(echoDeviceSpec(() => {
      const m = createAuthMiddleware({ signingAddress: deadAddress, log });
      middlewares.push(m);
      return m;
    }), ECHO_ENV);
    const client = insecureClient(DeviceServiceClient, service.address);
    try {
      expect(await codeOf(getDevice(tenant.viewer.authorization, client))).toBe(status.UNAVAILABLE);
      expect(await codeOf(getDevice('ApiKey iotk_whatever', client))).toBe(status.UNAVAILABLE);
    } finally {
      client.close();
      await service.stop();
    }
  });

  test('with Redis, replicas share the JWKS and API-key cache, so a replica verifies callers while signing is unreachable', async () => {
    const redis = new Redis(TEST_REDIS_URL);
    // The default prefix names the signing deployment; the isolated replica reaches
    // another address (none) but is configured into the same deployment's cache.
    const redisPrefix = `iot:auth:${signing.address}:`;
    const live = await startEcho({ redis });
    const isolated = await startTestService(echoDeviceSpec(() => remoteAuth({ signingAddress: deadAddress, redis, redisPrefix })), ECHO_ENV);
    const isolatedClient = insecureClient(DeviceServiceClient, isolated.address);
    // A service of another signing deployment (by default) never reads this one's keys.
    const elsewhere = await startTestService(echoDeviceSpec(() => remoteAuth({ signingAddress: deadAddress, redis })), ECHO_ENV);
    const elsewhereClient = insecureClient(DeviceServiceClient, elsewhere.address);
    try {
      const key = await tenant.createApiKey('viewer', 'shared-cache');
      // The replica that reaches signing fills the shared caches...
      expect((await getDevice(tenant.viewer.authorization, live.client)).device?.tenantId).toBe(tenant.tenantId);
      expect((await getDevice(key.authorization, live.client)).device?.tenantId).toBe(tenant.tenantId);
      // ...which the one that cannot reach signing uses.
      expect((await getDevice(tenant.viewer.authorization, isolatedClient)).device?.tenantId).toBe(tenant.tenantId);
      expect((await getDevice(key.authorization, isolatedClient)).device?.type).toBe('api_key');
      // The shared copy of a key holds the principal, never the secret.
      const stored = await redis.keys(`${redisPrefix}*`);
      expect(stored.sort()).toEqual(expect.arrayContaining([`${redisPrefix}jwks`]));
      for (const k of stored) expect(`${k} ${await redis.get(k)}`).not.toContain(key.secret);
      expect(await codeOf(getDevice(tenant.viewer.authorization, elsewhereClient))).toBe(status.UNAVAILABLE);
      // A forged token is still refused from the shared keys.
      expect(await codeOf(getDevice(`Bearer ${forge.tampered(tenant.viewer.accessToken, { role: 'admin' })}`, isolatedClient))).toBe(status.UNAUTHENTICATED);
    } finally {
      live.client.close();
      isolatedClient.close();
      elsewhereClient.close();
      await Promise.all([live.service.stop(), isolated.stop(), elsewhere.stop()]);
      redis.disconnect();
    }
  });

  test('the published JWKS holds ES256 P-256 keys only', async () => {
    const jwks = await unary(signing.clients.auth, signing.clients.auth.getJwks, {});
    expect(jwks.keys.length).toBeGreaterThan(0);
    for (const jwk of jwks.keys) {
      expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
      expect(keyFromJwk(jwk)).toBeDefined();
    }
  });
});
