import { ChildProcess, spawn } from 'node:child_process';
import mqtt from 'mqtt';
import { unary, repoPath } from '@iot-mesh/runtime';
import { CredentialKind } from '../../../gen/ts/iot/device/v1/credential';
import { Device, DeviceStatus } from '../../../gen/ts/iot/device/v1/device';
import { waitForReportedPort } from '../../../scripts/reported-port';
import { OperatorNats, startOperatorNats } from '../../../testing/nats-operator';
import { createTestDatabase, TestDatabase } from '../../../testing/postgres';
import { startSigningForTest, TestSigning } from '../../../testing/signing';
import { DeviceClients, deviceClients, eventually } from './harness';

jest.setTimeout(90_000);

let signing: TestSigning;
let nats: OperatorNats;
let db: TestDatabase;
let child: ChildProcess;
let output = '';
let clients: DeviceClients;

beforeAll(async () => {
  [signing, nats, db] = await Promise.all([startSigningForTest(), startOperatorNats({ mqtt: true }), createTestDatabase('iot_device_logs')]);
  child = spawn(process.execPath, [repoPath('node_modules', 'tsx', 'dist', 'cli.mjs'), repoPath('services', 'device', 'src', 'main.ts')], {
    env: { ...process.env, ...nats.deviceEnv(), DATABASE_URL: db.url, SIGNING_ADDRESS: signing.address, GRPC_PORT: '0', LOG_LEVEL: 'trace' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  // The child binds a free port itself and logs it.
  const port = await waitForReportedPort(() => output, 'grpc listening', { timeoutMs: 60_000, failed: () => (child.exitCode !== null ? `device exited (${child.exitCode}):\n${output}` : undefined) });
  clients = deviceClients(`127.0.0.1:${port}`);
});

afterAll(async () => {
  clients?.close();
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await signing?.stop();
  await nats?.stop();
  await db?.drop();
});

test('no token, seed or creds in the logs of a whole credential life cycle; SIGTERM exits 0', async () => {
  const t = await signing.createTenant();
  const op = { authorization: t.operator.authorization };
  await eventually('the device service to serve', () => unary(clients.devices, clients.devices.createDevice, { device: Device.fromPartial({ id: 'lg-1', name: 'Logged' }) }, op), 60_000, 250);
  const issued = (await unary(clients.credentials, clients.credentials.issueCredential, { deviceId: 'lg-1', expireTime: undefined, kind: CredentialKind.CREDENTIAL_KIND_UNSPECIFIED }, op)).credential!;
  const client = await mqtt.connectAsync(nats.server.mqttUrl, { username: 'lg-1', password: issued.token, clientId: 'lg-1', protocolVersion: 4, reconnectPeriod: 0 });
  client.on('error', () => undefined);
  await eventually('online', async () => (await unary(clients.devices, clients.devices.getDevice, { id: 'lg-1' }, op)).device!.status === DeviceStatus.DEVICE_STATUS_ONLINE);
  const rotated = (await unary(clients.credentials, clients.credentials.rotateCredential, { deviceId: 'lg-1', expireTime: undefined, kind: CredentialKind.CREDENTIAL_KIND_UNSPECIFIED }, op)).credential!;
  await unary(clients.credentials, clients.credentials.revokeCredential, { deviceId: 'lg-1' }, op);
  const batch = await unary(clients.devices, clients.devices.batchCreateDevices, { devices: [Device.fromPartial({ id: 'lg-2', name: 'x' })], issueCredentials: true }, op);
  await client.endAsync(true);

  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);

  expect(output).toContain('tenant account applied');
  const secrets = [
    issued.token,
    rotated.token,
    batch.credentials[0].token,
    nats.setup.operatorSeed,
    nats.setup.operatorSigningSeed,
    nats.setup.appAccountSeed,
    nats.setup.tenantKeySecret,
    ...nats.setup.serviceCreds.split('\n').filter((l) => l.startsWith('SU') || l.startsWith('ey')),
    ...nats.setup.systemCreds.split('\n').filter((l) => l.startsWith('SU') || l.startsWith('ey')),
    t.operator.accessToken,
  ];
  for (const secret of secrets) {
    expect(secret.length).toBeGreaterThan(20);
    // Any 40-character piece of a secret would be a leak too.
    expect(output.includes(secret.slice(-40))).toBe(false);
  }
});
