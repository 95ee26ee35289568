import { connect, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { insecureClient, unary } from '@iot-mesh/runtime';
import { CredentialKind, IssueCredentialRequest } from '../../../gen/ts/iot/device/v1/credential';
import { Device, DeviceStatus } from '../../../gen/ts/iot/device/v1/device';
import { DeviceSessionServiceClient } from '../../../gen/ts/iot/device/v1/sessions';
import { UNREPORTED_DISCONNECT } from '../src/domain/model';
import { TestTenant } from '../../../testing/signing';
import { DeviceHarness, eventually, startDeviceHarness } from './harness';

jest.setTimeout(90_000);

let h: DeviceHarness;
let t: TestTenant;
let sessions: DeviceSessionServiceClient;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  h = await startDeviceHarness();
  t = await h.signing.createTenant();
  sessions = insecureClient(DeviceSessionServiceClient, h.device.address);
});
afterAll(async () => {
  for (const nc of connections) await nc.close().catch(() => undefined);
  sessions?.close();
  await h?.stop();
});

const viewer = () => ({ authorization: t.viewer.authorization });
const list = (deviceId: string) => unary(sessions, sessions.listDeviceSessions, { deviceId }, viewer()).then((r) => r.sessions);
const getDevice = (id: string) => unary(h.clients.devices, h.clients.devices.getDevice, { id }, viewer()).then((r) => r.device!);

async function deviceWithToken(id: string): Promise<{ token: string; seed: string }> {
  await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id, name: id }) }, { authorization: t.operator.authorization });
  const { credential } = await unary(
    h.clients.credentials,
    h.clients.credentials.issueCredential,
    IssueCredentialRequest.fromPartial({ deviceId: id, kind: CredentialKind.CREDENTIAL_KIND_NATS }),
    { authorization: t.operator.authorization },
  );
  return credential!;
}

async function natsDevice(credential: { token: string; seed?: string }, name: string): Promise<NatsConnection> {
  const nc = await connect({ servers: h.nats.server.url, authenticator: deviceUserAuthenticator(credential), name, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  connections.push(nc);
  return nc;
}

test('a session is recorded from the server’s connect and disconnect events, with the server’s reason; last data time is telemetry only', async () => {
  const token = await deviceWithToken('sess-1');
  const nc = await natsDevice(token, 'sensor-a');
  const [open] = await eventually('the open session', async () => ((await list('sess-1')).length === 1 ? list('sess-1') : undefined));
  expect(open).toMatchObject({ deviceId: 'sess-1', clientName: 'sensor-a', remoteAddress: '127.0.0.1', disconnectTime: undefined, disconnectReason: '' });
  expect(open.connectTime).toBeInstanceOf(Date);
  expect((await getDevice('sess-1')).lastDataTime).toBeUndefined();

  nc.publish(`iot.${t.tenantId}.dev.sess-1.tel`, JSON.stringify({ metrics: [{ name: 't', numberValue: 1 }] }));
  await nc.flush();
  const withData = await eventually('the last data time', async () => {
    const d = await getDevice('sess-1');
    return d.lastDataTime ? d : undefined;
  });
  expect(withData.lastDataTime!.getTime()).toBeGreaterThanOrEqual(open.connectTime!.getTime());

  await nc.close();
  const [closed] = await eventually('the closed session', async () => {
    const s = await list('sess-1');
    return s[0]?.disconnectTime ? s : undefined;
  });
  expect([closed.serverId, closed.clientId, closed.disconnectReason]).toEqual([open.serverId, open.clientId, 'Client Closed']);
  const device = await getDevice('sess-1');
  expect([device.status, device.lastDisconnectReason]).toEqual([DeviceStatus.DEVICE_STATUS_OFFLINE, 'Client Closed']);
});

test('across a NATS server restart the old session is closed as unreported and the reconnection is a new session', async () => {
  const token = await deviceWithToken('sess-2');
  await natsDevice(token, 'sensor-b');
  const [before] = await eventually('the first session', async () => {
    const s = await list('sess-2');
    return s.length === 1 ? s : undefined;
  });

  await h.nats.server.restart();

  const after = await eventually(
    'the session on the restarted server, the old one closed',
    async () => {
      const s = await list('sess-2');
      return s.length === 2 && s[1].disconnectTime && !s[0].disconnectTime ? s : undefined;
    },
    30_000,
  );
  // Newest first: the reconnection, then the session the server never reported ending.
  expect(after[1]).toMatchObject({ serverId: before.serverId, clientId: before.clientId, disconnectReason: UNREPORTED_DISCONNECT });
  expect(after[0].serverId).not.toBe(before.serverId);
  await eventually('the device online again', async () => (await getDevice('sess-2')).status === DeviceStatus.DEVICE_STATUS_ONLINE);
});
