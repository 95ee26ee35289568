/*
 * The per-tenant device quota (issue 13, DEVICE_MAX_PER_TENANT): CreateDevice,
 * BatchCreateDevices and provisioning claims past it fail RESOURCE_EXHAUSTED
 * with a google.rpc.QuotaFailure, create nothing, and concurrent creations at
 * the limit cannot both pass. Other tenants are not held back.
 */
import { Metadata, status } from '@grpc/grpc-js';
import { insecureClient, rpcStatusDetails, unary } from '@iot-mesh/runtime';
import { CountDevicesRequest, Device } from '../../../gen/ts/iot/device/v1/device';
import { ProvisioningKey, ProvisioningServiceClient } from '../../../gen/ts/iot/device/v1/provisioning';
import { TestTenant } from '../../../testing/signing';
import { DeviceHarness, startDeviceHarness } from './harness';

jest.setTimeout(90_000);

const QUOTA = 4;
let h: DeviceHarness;
let provisioning: ProvisioningServiceClient;

beforeAll(async () => {
  h = await startDeviceHarness({ env: { DEVICE_MAX_PER_TENANT: String(QUOTA) } });
  provisioning = insecureClient(ProvisioningServiceClient, h.device.address);
});
afterAll(async () => {
  provisioning?.close();
  await h?.stop();
});

const op = (t: TestTenant) => ({ authorization: t.operator.authorization });
const create = (t: TestTenant, id: string) => unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id, name: id }) }, op(t));
const batch = (t: TestTenant, ids: string[]) =>
  unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices: ids.map((id) => Device.fromPartial({ id, name: id })), issueCredentials: false }, op(t));
const count = async (t: TestTenant) => (await unary(h.clients.devices, h.clients.devices.countDevices, CountDevicesRequest.fromPartial({}), op(t))).count;

async function outcome(call: Promise<unknown>): Promise<'ok' | { code: number; quota: { subject: string; description: string }[] }> {
  try {
    await call;
    return 'ok';
  } catch (err) {
    const e = err as { code: number; metadata?: Metadata };
    return { code: e.code, quota: rpcStatusDetails(e.metadata).quotaViolations ?? [] };
  }
}

test('CreateDevice and BatchCreateDevices past the quota: RESOURCE_EXHAUSTED with a QuotaFailure, nothing created; another tenant is not held back', async () => {
  const [t, other] = await Promise.all([h.signing.createTenant(), h.signing.createTenant()]);
  await batch(t, ['a1', 'a2', 'a3']);
  // Two more in one batch would make five: refused whole.
  const refused = await outcome(batch(t, ['a4', 'a5']));
  expect(refused).toEqual({ code: status.RESOURCE_EXHAUSTED, quota: [{ subject: `tenant:${t.tenantId}`, description: `devices per tenant (DEVICE_MAX_PER_TENANT = ${QUOTA})` }] });
  expect(Number(await count(t))).toBe(3);
  expect(await outcome(create(t, 'a4'))).toBe('ok');
  expect(await outcome(create(t, 'a5'))).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
  expect(Number(await count(t))).toBe(QUOTA);
  expect(await outcome(create(other, 'a5'))).toBe('ok');
  // Deleting one makes room again.
  await unary(h.clients.devices, h.clients.devices.deleteDevice, { id: 'a1' }, op(t));
  expect(await outcome(create(t, 'a5'))).toBe('ok');
});

test('concurrent creations at the limit: exactly as many pass as there is room for', async () => {
  const t = await h.signing.createTenant();
  await batch(t, ['c1', 'c2']);
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => outcome(create(t, `race-${i}`))));
  expect(results.filter((r) => r === 'ok')).toHaveLength(QUOTA - 2);
  expect(results.filter((r) => r !== 'ok').every((r) => typeof r === 'object' && r.code === status.RESOURCE_EXHAUSTED)).toBe(true);
  expect(Number(await count(t))).toBe(QUOTA);
});

test('a provisioning claim past the quota: RESOURCE_EXHAUSTED with a QuotaFailure; a re-claim of an existing device still works', async () => {
  const t = await h.signing.createTenant();
  const { secret } = await unary(provisioning, provisioning.createProvisioningKey, { provisioningKey: ProvisioningKey.fromPartial({ name: 'line' }) }, { authorization: t.admin.authorization });
  const claim = (serialNumber: string) => unary(provisioning, provisioning.claimDevice, { provisioningKey: secret, serialNumber, name: '' }, {});
  await batch(t, ['p1', 'p2', 'p3']);
  expect(await outcome(claim('SN-1'))).toBe('ok');
  expect(await outcome(claim('SN-2'))).toEqual({ code: status.RESOURCE_EXHAUSTED, quota: [{ subject: `tenant:${t.tenantId}`, description: `devices per tenant (DEVICE_MAX_PER_TENANT = ${QUOTA})` }] });
  expect(await outcome(claim('SN-1'))).toBe('ok');
  expect(Number(await count(t))).toBe(QUOTA);
});
