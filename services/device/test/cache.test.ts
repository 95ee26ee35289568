import { unary } from '@iot-mesh/runtime';
import { Device } from '../../../gen/ts/iot/device/v1/device';
import { startRedis } from '../../../scripts/local-servers';
import { TestLauncher } from '../../../testing/server-launcher';
import { startTestService } from '../../../testing/services';
import { TestTenant } from '../../../testing/signing';
import { deviceService } from '../src/main';
import { DeviceHarness, deviceClients, startDeviceHarness } from './harness';

jest.setTimeout(60_000);

let h: DeviceHarness;
let a: TestTenant;

beforeAll(async () => {
  h = await startDeviceHarness();
  a = await h.signing.createTenant();
});
afterAll(async () => {
  await h?.stop();
});

const create = (tenant: TestTenant, device: Partial<Device>) =>
  unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial(device) }, { authorization: tenant.operator.authorization }).then((r) => r.device!);

test('with Redis gone, reads fall back to PostgreSQL and stay fresh', async () => {
  // A private Redis for a second service instance, stopped once the instance is up
  // (the starter binds a free port and starts again on another if one is taken first).
  const launcher = new TestLauncher();
  try {
    const redis = await startRedis(launcher, { dir: launcher.dir, timeoutMs: 20_000 });
    const second = await startTestService(deviceService, { ...h.env, REDIS_URL: redis.url });
    const clients = deviceClients(second.address);
    try {
      await create(a, { id: 'redis-down-1', name: 'Before' });
      const viaSecond = () => unary(clients.devices, clients.devices.getDevice, { id: 'redis-down-1' }, { authorization: a.viewer.authorization }).then((r) => r.device!.name);
      expect(await viaSecond()).toBe('Before');
      await redis.proc.stop(5_000);
      expect(redis.proc.running).toBe(false);
      await unary(clients.devices, clients.devices.updateDevice, { device: Device.fromPartial({ id: 'redis-down-1', name: 'After' }), updateMask: ['name'] }, { authorization: a.operator.authorization });
      expect(await viaSecond()).toBe('After');
      const listed = await unary(clients.devices, clients.devices.listDevices, { page: undefined, labels: {}, status: 0, namePrefix: 'After', type: '', groupId: '', deviceTypeId: '', orderBy: '' }, { authorization: a.viewer.authorization });
      expect(listed.devices.map((d) => d.id)).toEqual(['redis-down-1']);
    } finally {
      clients.close();
      await second.stop();
    }
  } finally {
    await launcher.destroy();
  }
});
