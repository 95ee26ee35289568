import { status } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { metrics, unary } from '@iot-mesh/runtime';
import { startSigningForTest, TestSigning, TestTenant } from '../../../testing/signing';
import { failureOf } from './support/grpc-errors';

let signing: TestSigning;
let tenant: TestTenant;

beforeAll(async () => {
  signing = await startSigningForTest({
    env: {
      SIGNING_LOGIN_ACCOUNT_FREE_ATTEMPTS: '3',
      SIGNING_LOGIN_ADDRESS_FREE_ATTEMPTS: '12',
      SIGNING_LOGIN_BACKOFF_BASE_MS: '400',
    },
  });
  tenant = await signing.createTenant();
}, 60000);
afterAll(() => signing?.stop());

const login = (email: string, password: string, metadata?: Metadata) =>
  unary(signing.clients.auth, signing.clients.auth.login, { tenant: tenant.tenantName, email, password }, { metadata });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `iot_auth_logins_total` by result, as this process's /metrics shows it (the service runs in-process). */
async function loginCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = { success: 0, bad_credentials: 0, throttled: 0 };
  for (const [, result, value] of (await metrics.text()).matchAll(/^iot_auth_logins_total\{result="([a-z_]+)"\} (\d+)$/gm)) counts[result] = Number(value);
  return counts;
}

test('failed logins of one account back off exponentially with RESOURCE_EXHAUSTED and RetryInfo', async () => {
  const before = await loginCounts();
  const { email, password } = tenant.operator;
  for (let i = 0; i < 3; i++) expect((await failureOf(login(email, 'wrong-password-x'))).code).toBe(status.UNAUTHENTICATED);
  // The fourth failure locks the account for the base delay.
  expect((await failureOf(login(email, 'wrong-password-x'))).code).toBe(status.UNAUTHENTICATED);
  const locked = await failureOf(login(email, password));
  expect(locked.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(locked.retryDelayMs).toBeGreaterThan(0);
  expect(locked.retryDelayMs).toBeLessThanOrEqual(400);

  await sleep(locked.retryDelayMs! + 50);
  // Each further failure doubles the lock-out.
  expect((await failureOf(login(email, 'wrong-password-x'))).code).toBe(status.UNAUTHENTICATED);
  const longer = await failureOf(login(email, password));
  expect(longer.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(longer.retryDelayMs).toBeGreaterThan(400);
  expect(longer.retryDelayMs).toBeLessThanOrEqual(800);

  // Once it has passed, the right password works and clears the account's count.
  await sleep(longer.retryDelayMs! + 50);
  await login(email, password);
  expect((await failureOf(login(email, 'wrong-password-x'))).code).toBe(status.UNAUTHENTICATED);
  await login(email, password);

  // Other accounts were never locked.
  await login(tenant.viewer.email, tenant.viewer.password);

  // Every attempt was counted by its result.
  const after = await loginCounts();
  expect({ success: after.success - before.success, bad_credentials: after.bad_credentials - before.bad_credentials, throttled: after.throttled - before.throttled }).toEqual({
    success: 3,
    bad_credentials: 6,
    throttled: 2,
  });
});

test('failed logins from one source address are throttled across accounts; x-forwarded-for is not trusted by default', async () => {
  // 6 failures so far came from this address; spread the next ones over unknown accounts.
  const spoofed = new Metadata();
  spoofed.set('x-forwarded-for', '203.0.113.9');
  let failure;
  for (let i = 0; i < 20; i++) {
    failure = await failureOf(login(`nobody-${i}@example.test`, 'wrong-password-x', spoofed));
    if (failure.code === status.RESOURCE_EXHAUSTED) break;
  }
  expect(failure!.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(failure!.retryDelayMs).toBeGreaterThan(0);
  // The address is locked for everyone, even an account with no failures and the right password.
  const locked = await failureOf(login(tenant.admin.email, tenant.admin.password));
  expect(locked.code).toBe(status.RESOURCE_EXHAUSTED);
  expect(locked.message).toMatch(/too many failed attempts/);
});
