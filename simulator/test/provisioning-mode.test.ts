import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { deviceService } from '@iot-mesh/device';
import { createMonitoringService } from '@iot-mesh/monitoring';
import { insecureClient, unary } from '@iot-mesh/runtime';
import { DeviceServiceClient, ListDevicesRequest } from '../../gen/ts/iot/device/v1/device';
import { DeviceType, DeviceTypeServiceClient, MetricKind } from '../../gen/ts/iot/device/v1/device_types';
import { ProvisioningKey, ProvisioningServiceClient } from '../../gen/ts/iot/device/v1/provisioning';
import { TelemetryServiceClient } from '../../gen/ts/iot/monitoring/v1/telemetry';
import { OperatorNats, startOperatorNats } from '../../testing/nats-operator';
import { createTestDatabase, TestDatabase } from '../../testing/postgres';
import { startTestService, TestService } from '../../testing/services';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { TEST_REDIS_URL } from '../../testing/test-services';
import { ClaimRefused, fleetSerials } from '../src/claim';
import { parseOptions } from '../src/options';
import { startSimulation } from '../src/run';

describe('provisioning mode options', () => {
  test('the key from the option or SIMULATOR_PROVISIONING_KEY, serials from the prefix, claims kept by default per prefix', () => {
    expect(parseOptions(['--provisioning-key', 'iotpk_a', '--device-api', 'h:1'], {})!.source).toEqual({ kind: 'claim', deviceAddress: 'h:1', provisioningKey: 'iotpk_a', serialPrefix: 'SIM', stateFile: 'simulator-claims-SIM.json' });
    expect(parseOptions(['--serial-prefix', 'LINE1', '--claims', 'c.json'], { SIMULATOR_PROVISIONING_KEY: 'iotpk_b' })!.source).toMatchObject({ provisioningKey: 'iotpk_b', serialPrefix: 'LINE1', stateFile: 'c.json' });
    expect(fleetSerials('LINE1', 3)).toEqual(['LINE1-0001', 'LINE1-0002', 'LINE1-0003']);
  });

  test('refuses a second device source and a serial prefix with spaces', () => {
    expect(() => parseOptions(['--credentials', 'f.json'], { SIMULATOR_PROVISIONING_KEY: 'iotpk_b' })).toThrow('--credentials, --provision and --provisioning-key (SIMULATOR_PROVISIONING_KEY) exclude each other');
    expect(() => parseOptions(['--provisioning-key', 'k', '--serial-prefix', 'a b'], {})).toThrow(/--serial-prefix "a b": 1-100 printable characters/);
  });
});

/**
 * The simulator's provisioning mode against the real platform: signing,
 * device (minting credentials on an operator-mode nats-server with MQTT) and
 * monitoring storing what the devices publish there.
 */
describe('simulator provisioning mode', () => {
  let signing: TestSigning;
  let nats: OperatorNats;
  let databases: TestDatabase[] = [];
  let services: TestService<never>[] = [];
  let tenant: TestTenant;
  let dir: string;
  let devices: DeviceServiceClient;
  let keys: ProvisioningServiceClient;
  let telemetry: TelemetryServiceClient;
  let secret: string;
  let keyId: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sim-claims-'));
    const [deviceDb, monitoringDb] = await Promise.all([createTestDatabase('iot_sim_device'), createTestDatabase('iot_sim_monitoring')]);
    databases = [deviceDb, monitoringDb];
    [signing, nats] = await Promise.all([startSigningForTest(), startOperatorNats({ mqtt: true, jetstream: true })]);
    const [deviceSvc, monitoringSvc] = await Promise.all([
      startTestService(deviceService, { DATABASE_URL: deviceDb.url, REDIS_URL: TEST_REDIS_URL, SIGNING_ADDRESS: signing.address, ...nats.deviceEnv() }),
      startTestService(createMonitoringService(), { DATABASE_URL: monitoringDb.url, REDIS_URL: TEST_REDIS_URL, SIGNING_ADDRESS: signing.address, WRITER_BATCH_WAIT_MS: '20', ...nats.serviceEnv() }),
    ]);
    services = [deviceSvc as TestService<never>, monitoringSvc as TestService<never>];
    tenant = await signing.createTenant();
    devices = insecureClient(DeviceServiceClient, deviceSvc.address);
    keys = insecureClient(ProvisioningServiceClient, deviceSvc.address);
    telemetry = insecureClient(TelemetryServiceClient, monitoringSvc.address);
    const types = insecureClient(DeviceTypeServiceClient, deviceSvc.address);
    const admin = { authorization: tenant.admin.authorization };
    await unary(types, types.createDeviceType, { deviceType: DeviceType.fromPartial({ name: 'weather-station', metrics: [{ name: 'temperature', unit: '°C', kind: MetricKind.METRIC_KIND_GAUGE }] }) }, admin);
    types.close();
    const created = await unary(keys, keys.createProvisioningKey, { provisioningKey: ProvisioningKey.fromPartial({ name: 'simulated line', deviceTypeId: 'weather-station', labels: { site: 'sim-lab' } }) }, admin);
    secret = created.secret;
    keyId = created.provisioningKey!.id;
  }, 120_000);

  afterAll(async () => {
    for (const client of [devices, keys, telemetry]) client?.close();
    for (const s of services.reverse()) await s.stop().catch(() => undefined);
    await signing?.stop();
    await nats?.stop();
    for (const db of databases) await db.drop().catch(() => undefined);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the simulator as `npm run simulate -- <args>` would, with the key in the environment, until `until` holds. */
  async function simulate(args: string[], until: (deviceIds: string[]) => Promise<boolean>, environment: Record<string, string> = { SIMULATOR_PROVISIONING_KEY: secret }): Promise<string[]> {
    const options = parseOptions(['--device-api', services[0].address, '--transport', 'mqtt', '--rate', '5', '--quiet', ...args], environment)!;
    const simulation = await startSimulation(options, () => undefined);
    const ids = simulation.fleet.devices.map((d) => d.identity.deviceId);
    try {
      while (!(await until(ids))) await sleep(200);
    } finally {
      simulation.stop();
      await simulation.done;
    }
    return ids;
  }

  /** True once monitoring stored a point of every device. */
  const allStored = async (ids: string[]) => {
    const latest = await unary(telemetry, telemetry.getLatest, { deviceIds: ids, metrics: ['temperature'] }, { authorization: tenant.viewer.authorization });
    return new Set(latest.points.map((p) => p.deviceId)).size === ids.length;
  };

  it('each device claims itself with the key (its type and labels), publishes telemetry that is stored, and a restart runs the same devices', async () => {
    const claims = path.join(dir, 'fleet.json');
    const first = await simulate(['-n', '4', '--serial-prefix', 'SN-A', '--claims', claims], allStored);
    expect(new Set(first).size).toBe(4);
    expect(fs.statSync(claims).mode & 0o777).toBe(0o600);

    const listed = await unary(devices, devices.listDevices, ListDevicesRequest.fromPartial({ labels: { site: 'sim-lab' } }), { authorization: tenant.viewer.authorization });
    const byId = new Map(listed.devices.map((d) => [d.id, d]));
    expect(first.map((id) => byId.get(id)?.serialNumber)).toEqual(['SN-A-0001', 'SN-A-0002', 'SN-A-0003', 'SN-A-0004']);
    for (const id of first) expect(byId.get(id)).toMatchObject({ type: 'weather-station', labels: { site: 'sim-lab' } });

    // A restart with the state file reuses the kept credentials: same devices, no claim made.
    const before = (await unary(keys, keys.listProvisioningKeys, {}, { authorization: tenant.admin.authorization })).provisioningKeys.find((k) => k.id === keyId)!;
    expect(await simulate(['-n', '4', '--serial-prefix', 'SN-A', '--claims', claims], allStored)).toEqual(first);
    const after = (await unary(keys, keys.listProvisioningKeys, {}, { authorization: tenant.admin.authorization })).provisioningKeys.find((k) => k.id === keyId)!;
    expect(after.claimCount).toBe(before.claimCount);

    // With the state file lost, the serials are claimed again: still the same devices, none created.
    fs.rmSync(claims);
    expect(await simulate(['-n', '4', '--serial-prefix', 'SN-A', '--claims', claims], allStored)).toEqual(first);
    const reclaimed = (await unary(keys, keys.listProvisioningKeys, {}, { authorization: tenant.admin.authorization })).provisioningKeys.find((k) => k.id === keyId)!;
    expect(reclaimed.deviceCount).toBe(before.deviceCount);
    expect(reclaimed.claimCount).toBe(before.claimCount + 4n);
  }, 120_000);

  it('a revoked key is refused with the service reason, naming the serial', async () => {
    await unary(keys, keys.revokeProvisioningKey, { id: keyId }, { authorization: tenant.admin.authorization });
    const options = parseOptions(['--device-api', services[0].address, '--provisioning-key', secret, '-n', '2', '--serial-prefix', 'SN-B', '--claims', path.join(dir, 'revoked.json'), '--quiet'], {})!;
    const refused = await startSimulation(options, () => undefined).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(ClaimRefused);
    expect((refused as Error).message).toMatch(/^claim of serial "SN-B-000[12]" refused \(PERMISSION_DENIED\): the provisioning key "iotpk_[^"]*" was revoked$/);
    expect(fs.existsSync(path.join(dir, 'revoked.json'))).toBe(false);
  }, 60_000);
});
