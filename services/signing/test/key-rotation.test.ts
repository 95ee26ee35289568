import crypto from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { DeviceServiceClient } from '../../../gen/ts/iot/device/v1/device';
import { AuthMiddleware, createAuthMiddleware, createLogger, insecureClient, unary } from '@iot-mesh/runtime';
import { signAccessToken } from '../src/domain/access-tokens';
import { startTestService, TestService } from '../../../testing/services';
import { startSigningForTest, TestSigning, TestTenant, TestUser } from '../../../testing/signing';
import { echoDeviceSpec } from './support/echo-service';
import { codeOf } from './support/grpc-errors';
import { claimsFor, currentSigningKey } from './support/tokens';

// Wide enough margins that a slow, shared machine cannot make a step land on the wrong side.
const ACTIVATION_DELAY_MS = 3000;
const TOKEN_TTL_S = 8;
const encryptionKey = crypto.randomBytes(32).toString('hex');
let signing: TestSigning;
let tenant: TestTenant;
let echo: TestService<{}>;
let devices: DeviceServiceClient;
let middleware: AuthMiddleware;

beforeAll(async () => {
  signing = await startSigningForTest({
    env: {
      SIGNING_KEY_ENCRYPTION_KEY: encryptionKey,
      SIGNING_ACCESS_TOKEN_TTL_SECONDS: String(TOKEN_TTL_S),
      SIGNING_KEY_ACTIVATION_DELAY_MS: String(ACTIVATION_DELAY_MS),
      SIGNING_KEY_RETIRE_GRACE_MS: '0',
    },
  });
  tenant = await signing.createTenant();
  echo = await startTestService(
    echoDeviceSpec(() => (middleware = createAuthMiddleware({ signingAddress: signing.address, log: createLogger('test', 'silent'), jwks: { maxAgeMs: 300, minRefreshIntervalMs: 0 } }))),
    {},
  );
  devices = insecureClient(DeviceServiceClient, echo.address);
}, 60000);

afterAll(async () => {
  devices?.close();
  await echo?.stop();
  middleware?.close();
  await signing?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kidOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).kid as string;
const grpcKids = async () => (await unary(signing.clients.auth, signing.clients.auth.getJwks, {})).keys.map((k) => k.kid).sort();
async function httpJwks(): Promise<{ status: number; contentType: string | null; body: { keys: Array<{ kid: string }> } }> {
  const res = await fetch(`http://127.0.0.1:${signing.httpPort}/.well-known/jwks.json`);
  return { status: res.status, contentType: res.headers.get('content-type'), body: (await res.json()) as { keys: Array<{ kid: string }> } };
}
/** Accepted at another service (cached JWKS) and at signing (own key store)? */
async function accepted(user: Pick<TestUser, 'authorization'>): Promise<[number, number]> {
  return [
    await codeOf(unary(devices, devices.getDevice, { id: 'd' }, { authorization: user.authorization })),
    await codeOf(unary(signing.clients.auth, signing.clients.auth.whoAmI, {}, { authorization: user.authorization })),
  ];
}
const login = () => signing.login(tenant.tenantName, tenant.viewer.email, tenant.viewer.password);

test('the JWKS is served over HTTP as RFC 7517 JSON, the same set as over gRPC', async () => {
  const jwks = await httpJwks();
  expect(jwks.status).toBe(200);
  expect(jwks.contentType).toMatch(/application\/json/);
  expect(jwks.body.keys.map((k) => k.kid).sort()).toEqual(await grpcKids());
  expect(jwks.body.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
  expect(Object.keys(jwks.body.keys[0]).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  expect((await fetch(`http://127.0.0.1:${signing.httpPort}/other`)).status).toBe(404);
});

test('rotation: the new key is published before it signs, tokens in flight keep working, the old key is retired after they expire', async () => {
  const oldKey = await currentSigningKey(signing.database.url, encryptionKey);
  const before = await login();
  expect(kidOf(before.accessToken)).toBe(oldKey.kid);
  expect(await accepted(before)).toEqual([status.OK, status.OK]);

  const platformAdmin = await signing.login(signing.platformAdmin.tenantName, signing.platformAdmin.email, signing.platformAdmin.password);
  const rotatedAt = Date.now();
  const { kid: newKid } = await unary(signing.clients.auth, signing.clients.auth.rotateSigningKey, {}, { authorization: platformAdmin.authorization });
  expect(newKid).not.toBe(oldKey.kid);
  // Published at once, over both transports...
  expect(await grpcKids()).toEqual([oldKey.kid, newKid].sort());
  expect((await httpJwks()).body.keys.map((k) => k.kid).sort()).toEqual([oldKey.kid, newKid].sort());
  // ...but the old key still signs until the activation delay has passed.
  const inFlight = await login();
  expect(kidOf(inFlight.accessToken)).toBe(oldKey.kid);

  await sleep(rotatedAt + ACTIVATION_DELAY_MS + 100 - Date.now());
  const after = await login();
  expect(kidOf(after.accessToken)).toBe(newKid);
  expect(await accepted(after)).toEqual([status.OK, status.OK]);
  // Tokens signed by the old key before the switch still verify everywhere.
  expect(await accepted(inFlight)).toEqual([status.OK, status.OK]);
  expect(await grpcKids()).toEqual([oldKey.kid, newKid].sort());

  // Once every token the old key signed has expired, it is withdrawn and refused,
  // even for a token with a future expiry signed by it.
  await sleep(TOKEN_TTL_S * 1000 + 200);
  expect(await grpcKids()).toEqual([newKid]);
  expect((await httpJwks()).body.keys.map((k) => k.kid)).toEqual([newKid]);
  const lateToken = signAccessToken(claimsFor({ sub: tenant.viewer.userId, tid: tenant.tenantId }), oldKey.privateKey, oldKey.kid);
  expect(await accepted({ authorization: `Bearer ${lateToken}` })).toEqual([status.UNAUTHENTICATED, status.UNAUTHENTICATED]);
  // Tokens issued before the rotation have expired by now and are refused.
  expect(await accepted(before)).toEqual([status.UNAUTHENTICATED, status.UNAUTHENTICATED]);
  expect(await accepted(inFlight)).toEqual([status.UNAUTHENTICATED, status.UNAUTHENTICATED]);
  // The new key signs and verifies.
  expect(await accepted(await login())).toEqual([status.OK, status.OK]);
});

test('private signing keys are stored encrypted', async () => {
  const { Client } = await import('pg');
  const db = new Client({ connectionString: signing.database.url });
  await db.connect();
  try {
    const { rows } = await db.query('SELECT kid, private_key, encryption FROM signing.signing_keys');
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row.encryption).toBe('aes-256-gcm');
      expect(() => crypto.createPrivateKey({ key: row.private_key, format: 'der', type: 'pkcs8' })).toThrow();
    }
  } finally {
    await db.end();
  }
});
