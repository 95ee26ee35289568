/*
 * Signing verifies API keys against its own table without a cache (so a
 * revocation takes effect at once there); concurrent calls presenting the
 * same key share one verification instead of one table lookup each (issue 13).
 */
import { metrics, unary } from '@iot-mesh/runtime';
import { startSigningForTest, TestSigning } from '../../../testing/signing';

jest.setTimeout(60_000);

let signing: TestSigning;

beforeAll(async () => {
  signing = await startSigningForTest();
});
afterAll(async () => {
  await signing?.stop();
});

async function lookupsCounted(): Promise<number> {
  return Number(/^iot_auth_api_key_lookups_total (\d+)$/m.exec(await metrics.text())?.[1] ?? 0);
}

test('fifty concurrent calls with one API key: all answered, far fewer lookups than calls', async () => {
  const tenant = await signing.createTenant();
  const key = await tenant.createApiKey('viewer', 'burst');
  const auth = signing.clients.auth;
  const before = await lookupsCounted();
  const answers = await Promise.all(Array.from({ length: 50 }, () => unary(auth, auth.whoAmI, {}, { authorization: key.authorization })));
  expect(answers.every((a) => a.principal?.tenantId === tenant.tenantId)).toBe(true);
  const lookups = (await lookupsCounted()) - before;
  expect(lookups).toBeGreaterThanOrEqual(1);
  expect(lookups).toBeLessThan(50);
});
