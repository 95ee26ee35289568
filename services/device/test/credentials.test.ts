import { status } from '@grpc/grpc-js';
import mqtt, { MqttClient } from 'mqtt';
import { connect, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { metrics, unary } from '@iot-mesh/runtime';
import { CommandStatus } from '../../../gen/ts/iot/device/v1/command';
import { CredentialKind } from '../../../gen/ts/iot/device/v1/credential';
import { CredentialState, Device, DeviceCredential, DeviceStatus } from '../../../gen/ts/iot/device/v1/device';
import { TestTenant } from '../../../testing/signing';
import { startTestService } from '../../../testing/services';
import { deviceService } from '../src/main';
import { DeviceHarness, deviceClients, eventually, startDeviceHarness } from './harness';

jest.setTimeout(90_000);

let h: DeviceHarness;
let t: TestTenant;
const received: { subject: string; data: string }[] = [];
const cleanup: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  h = await startDeviceHarness({ mqtt: true });
  t = await h.signing.createTenant();
  // What the platform sees: every device subject of the account.
  h.platform.subscribe('iot.>', { callback: (_err, msg) => received.push({ subject: msg.subject, data: new TextDecoder().decode(msg.data) }) });
  await h.platform.flush();
});
afterAll(async () => {
  for (const fn of cleanup) await fn().catch(() => undefined);
  await h?.stop();
});

const op = () => ({ authorization: t.operator.authorization });

const { CREDENTIAL_KIND_MQTT: MQTT, CREDENTIAL_KIND_NATS: NATS } = CredentialKind;

/** A new device with a credential of `kind` (the server's default, MQTT, unless given). */
async function newDevice(id: string, kind = CredentialKind.CREDENTIAL_KIND_UNSPECIFIED): Promise<DeviceCredential> {
  await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id, name: id }) }, op());
  const { credential } = await unary(h.clients.credentials, h.clients.credentials.issueCredential, { deviceId: id, expireTime: undefined, kind }, op());
  return credential!;
}

const rotate = async (deviceId: string, kind: CredentialKind) => (await unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId, expireTime: undefined, kind }, op())).credential!;

async function mqttConnect(credential: DeviceCredential, clientId: string): Promise<MqttClient> {
  const client = await mqtt.connectAsync(h.nats.server.mqttUrl, { username: credential.deviceId, password: credential.token, clientId, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 });
  client.on('error', () => undefined);
  cleanup.push(() => client.endAsync(true));
  return client;
}

async function natsConnect(credential: DeviceCredential): Promise<NatsConnection> {
  const nc = await connect({ servers: h.nats.server.url, authenticator: deviceUserAuthenticator(credential), reconnect: false });
  cleanup.push(() => nc.close());
  return nc;
}

const getDevice = (id: string) => unary(h.clients.devices, h.clients.devices.getDevice, { id }, { authorization: t.viewer.authorization }).then((r) => r.device!);

test('a device publishes over MQTT and NATS only on its own subjects', async () => {
  const cred = await newDevice('mq-1');
  await newDevice('mq-2');
  const natsCred = await newDevice('mq-3', NATS);
  expect(cred.mqttUrl).toBe(h.nats.server.mqttUrl);
  // An MQTT credential is bearer (its token is the MQTT password); a NATS one comes with its seed and is refused without it.
  expect(cred.seed).toBe('');
  expect(natsCred.seed).toMatch(/^SU[A-Z2-7]{56}$/);
  await expect(natsConnect({ ...natsCred, seed: '' })).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
  const own = `iot.${t.tenantId}.dev.mq-1`;
  const ownNats = `iot.${t.tenantId}.dev.mq-3`;
  const other = `iot.${t.tenantId}.dev.mq-2`;

  const client = await mqttConnect(cred, 'mq-1');
  await client.publishAsync(`iot/${t.tenantId}/dev/mq-2/tel`, 'forged-mqtt', { qos: 1 });
  await client.publishAsync(`iot/${t.tenantId}/dev/mq-1/cmd`, 'self-command', { qos: 1 });
  await client.publishAsync(`iot/${t.tenantId}/dev/mq-1/tel`, 'mqtt-ok', { qos: 1 });
  // Subscribing to another device's commands is refused.
  await expect(client.subscribeAsync(`iot/${t.tenantId}/dev/mq-2/cmd`, { qos: 0 })).rejects.toThrow();
  await expect(client.subscribeAsync(`iot/${t.tenantId}/dev/+/cmd`, { qos: 0 })).rejects.toThrow();

  const nc = await natsConnect(natsCred);
  nc.publish(`${other}.tel`, 'forged-nats');
  nc.publish(`iot.${t.tenantId}.dev.*.tel`, 'wildcard');
  nc.publish(`${ownNats}.state`, JSON.stringify({ reported: { fw: '1.0' } }));
  nc.publish(`${ownNats}.tel`, 'nats-ok');
  await nc.flush();

  await eventually('both own publishes', () => received.some((m) => m.data === 'mqtt-ok') && received.some((m) => m.data === 'nats-ok'));
  // The platform subscriber saw what was allowed and nothing else (it was sent before the allowed ones).
  expect(received.filter((m) => ['forged-mqtt', 'forged-nats', 'wildcard', 'self-command'].includes(m.data))).toEqual([]);
  expect(received.find((m) => m.data === 'mqtt-ok')!.subject).toBe(`${own}.tel`);
  expect(received.find((m) => m.data === 'nats-ok')!.subject).toBe(`${ownNats}.tel`);

  // The state report became the reported half of the twin.
  const twin = await eventually('reported state', async () => {
    const r = await unary(h.clients.twin, h.clients.twin.getTwin, { deviceId: 'mq-3' }, { authorization: t.viewer.authorization });
    return r.twin!.reportedVersion > 0n ? r.twin! : undefined;
  });
  expect(twin.reported).toEqual({ fw: '1.0' });
});

test('BatchIssueCredentials issues several devices their credentials in one call, all or none', async () => {
  const ids = ['bi-1', 'bi-2', 'bi-3'];
  for (const id of ids) await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id, name: id }) }, op());
  const batch = (deviceIds: string[], kind = NATS) => unary(h.clients.credentials, h.clients.credentials.batchIssueCredentials, { deviceIds, expireTime: undefined, kind }, op());
  // Refused as a whole: nothing is issued when one device is missing or named twice, and a viewer may not.
  await expect(batch(['bi-1', 'bi-missing'])).rejects.toMatchObject({ code: status.NOT_FOUND });
  await expect(batch(['bi-1', 'bi-1'])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  await expect(batch([])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  await expect(unary(h.clients.credentials, h.clients.credentials.batchIssueCredentials, { deviceIds: ids, expireTime: undefined, kind: NATS }, { authorization: t.viewer.authorization })).rejects.toMatchObject({
    code: status.PERMISSION_DENIED,
  });
  expect((await getDevice('bi-1')).credentialState).not.toBe(CredentialState.CREDENTIAL_STATE_ACTIVE);

  const { credentials } = await batch(ids);
  expect(credentials.map((c) => c.deviceId)).toEqual(ids);
  for (const id of ids) expect((await getDevice(id)).credentialState).toBe(CredentialState.CREDENTIAL_STATE_ACTIVE);
  // Each token is that device's own NATS credential.
  const nc = await natsConnect(credentials[1]);
  await nc.flush();
  await expect(mqttConnect(credentials[1], 'bi-2-mqtt')).rejects.toBeDefined();
  // A device with an active credential refuses the whole batch.
  await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id: 'bi-4', name: 'bi-4' }) }, op());
  await expect(batch(['bi-4', 'bi-2'])).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
  expect((await getDevice('bi-4')).credentialState).not.toBe(CredentialState.CREDENTIAL_STATE_ACTIVE);
});

test('status follows real connects and disconnects', async () => {
  const cred = await newDevice('st-1');
  expect((await getDevice('st-1')).status).toBe(DeviceStatus.DEVICE_STATUS_OFFLINE);
  const client = await mqttConnect(cred, 'st-1');
  const online = await eventually('online', async () => ((await getDevice('st-1')).status === DeviceStatus.DEVICE_STATUS_ONLINE ? getDevice('st-1') : undefined));
  expect(online.lastConnectTime).toBeDefined();
  await client.endAsync();
  const offline = await eventually('offline', async () => {
    const d = await getDevice('st-1');
    return d.status === DeviceStatus.DEVICE_STATUS_OFFLINE ? d : undefined;
  });
  expect(offline.lastDisconnectTime!.getTime()).toBeGreaterThanOrEqual(online.lastConnectTime!.getTime());
});

test('revoke drops the live connection and refuses reconnects; rotate kills the old token', async () => {
  const cred = await newDevice('rv-1');
  const client = await mqttConnect(cred, 'rv-1');
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  const revoked = await unary(h.clients.credentials, h.clients.credentials.revokeCredential, { deviceId: 'rv-1' }, op());
  expect(revoked.device!.credentialState).toBe(CredentialState.CREDENTIAL_STATE_REVOKED);
  await closed;
  await expect(mqttConnect(cred, 'rv-1b')).rejects.toThrow(/authori/i);

  // A fresh credential works; rotating it makes the previous one fail, whatever the kinds.
  const second = await rotate('rv-1', NATS);
  const live = await natsConnect(second);
  const third = await rotate('rv-1', MQTT);
  await live.closed();
  await expect(natsConnect(second)).rejects.toThrow();
  const ok = await mqttConnect(third, 'rv-1c');
  expect(ok.connected).toBe(true);

  // Issue refuses while a credential is active.
  expect(await unary(h.clients.credentials, h.clients.credentials.issueCredential, { deviceId: 'rv-1', expireTime: undefined, kind: CredentialKind.CREDENTIAL_KIND_UNSPECIFIED }, op()).catch((e) => e.code)).toBe(status.FAILED_PRECONDITION);
});

test('deleting a device drops its live connection and its token stops working', async () => {
  const cred = await newDevice('del-1', NATS);
  const nc = await natsConnect(cred);
  await unary(h.clients.devices, h.clients.devices.deleteDevice, { id: 'del-1' }, op());
  await nc.closed();
  await expect(natsConnect(cred)).rejects.toThrow();
});

test('desired state reaches the device on change and again when it reconnects', async () => {
  const cred = await newDevice('tw-1');
  const first = await mqttConnect(cred, 'tw-1');
  const got: string[] = [];
  first.on('message', (_topic, payload) => got.push(payload.toString()));
  await first.subscribeAsync(`iot/${t.tenantId}/dev/tw-1/desired`, { qos: 1 });
  const updated = await unary(h.clients.twin, h.clients.twin.updateDesired, { deviceId: 'tw-1', desired: { interval: 5 }, expectedVersion: 0n }, op());
  expect(updated.twin!.desiredVersion).toBe(1n);
  await eventually('desired on change', () => got.length > 0);
  expect(JSON.parse(got[0])).toEqual({ desired: { interval: 5 }, version: '1' });

  // Changed while the device is away, delivered when it comes back.
  await first.endAsync();
  await eventually('offline', async () => (await getDevice('tw-1')).status === DeviceStatus.DEVICE_STATUS_OFFLINE);
  await unary(h.clients.twin, h.clients.twin.updateDesired, { deviceId: 'tw-1', desired: { interval: 9 }, expectedVersion: 1n }, op());
  // It comes back over NATS this time (a NATS credential).
  const nc = await natsConnect(await rotate('tw-1', NATS));
  const seen: string[] = [];
  nc.subscribe(`iot.${t.tenantId}.dev.tw-1.desired`, { callback: (_e, m) => seen.push(new TextDecoder().decode(m.data)) });
  await eventually('desired on reconnect', () => seen.length > 0);
  expect(JSON.parse(seen[0])).toEqual({ desired: { interval: 9 }, version: '2' });

  // Optimistic concurrency and the size limit.
  expect(await unary(h.clients.twin, h.clients.twin.updateDesired, { deviceId: 'tw-1', desired: { x: 1 }, expectedVersion: 1n }, op()).catch((e) => e.code)).toBe(status.ABORTED);
  const big = { blob: 'x'.repeat(33 * 1024) };
  const tooBig = await unary(h.clients.twin, h.clients.twin.updateDesired, { deviceId: 'tw-1', desired: big, expectedVersion: 0n }, op()).catch((e) => e);
  expect(tooBig.code).toBe(status.INVALID_ARGUMENT);
  expect(tooBig.details).toMatch(/32 KB/);
});

test('commands: reply over NATS and MQTT, offline at once, silent device times out; all recorded', async () => {
  const cred = await newDevice('cm-1', NATS);
  const send = (name: string, timeoutMs = 3000) =>
    unary(h.clients.commands, h.clients.commands.sendCommand, { deviceId: 'cm-1', name, payload: { n: 1 }, timeout: { seconds: BigInt(Math.floor(timeoutMs / 1000)), nanos: (timeoutMs % 1000) * 1e6 } }, { ...op(), deadlineMs: 20_000 });

  const offline = await send('ping').catch((e) => e);
  expect(offline.code).toBe(status.FAILED_PRECONDITION);

  const nc = await natsConnect(cred);
  nc.subscribe(`iot.${t.tenantId}.dev.cm-1.cmd`, {
    callback: (_e, m) => {
      const request = JSON.parse(new TextDecoder().decode(m.data));
      if (request.name === 'ping') m.respond(JSON.stringify({ commandId: request.commandId, ok: true, result: { pong: request.payload.n } }));
      if (request.name === 'break') m.respond(JSON.stringify({ commandId: request.commandId, ok: false, error: 'cannot' }));
      // 'sleep' gets no answer
    },
  });
  await nc.flush();
  await eventually('online', async () => (await getDevice('cm-1')).status === DeviceStatus.DEVICE_STATUS_ONLINE);
  const ok = await send('ping');
  expect(ok.command).toMatchObject({ status: CommandStatus.COMMAND_STATUS_SUCCEEDED, result: { pong: 1 }, name: 'ping' });
  expect((await send('break')).command).toMatchObject({ status: CommandStatus.COMMAND_STATUS_FAILED, error: 'cannot' });
  expect((await send('sleep', 500).catch((e) => e)).code).toBe(status.DEADLINE_EXCEEDED);

  // An MQTT device answers on its .cmd.reply subject.
  const mcred = await newDevice('cm-2');
  const client = await mqttConnect(mcred, 'cm-2');
  client.on('message', (_topic, payload) => {
    const request = JSON.parse(payload.toString());
    void client.publishAsync(`iot/${t.tenantId}/dev/cm-2/cmd/reply`, JSON.stringify({ commandId: request.commandId, ok: true, result: { via: 'mqtt' } }), { qos: 1 });
  });
  await client.subscribeAsync(`iot/${t.tenantId}/dev/cm-2/cmd`, { qos: 1 });
  await eventually('online', async () => (await getDevice('cm-2')).status === DeviceStatus.DEVICE_STATUS_ONLINE);
  const viaMqtt = await unary(h.clients.commands, h.clients.commands.sendCommand, { deviceId: 'cm-2', name: 'ping', payload: {}, timeout: undefined }, op());
  expect(viaMqtt.command).toMatchObject({ status: CommandStatus.COMMAND_STATUS_SUCCEEDED, result: { via: 'mqtt' } });

  const history = await unary(h.clients.commands, h.clients.commands.listCommands, { deviceId: 'cm-1', page: undefined }, { authorization: t.viewer.authorization });
  expect(history.commands.map((c) => c.status)).toEqual([
    CommandStatus.COMMAND_STATUS_TIMED_OUT,
    CommandStatus.COMMAND_STATUS_FAILED,
    CommandStatus.COMMAND_STATUS_SUCCEEDED,
    CommandStatus.COMMAND_STATUS_DEVICE_OFFLINE,
  ]);
  expect(history.commands[0].actorId).toBe(t.operator.userId);
});

test('revocations survive a nats-server that lost its account state: the service re-applies them', async () => {
  const cred = await newDevice('rs-1', NATS);
  await unary(h.clients.credentials, h.clients.credentials.revokeCredential, { deviceId: 'rs-1' }, op());
  await expect(natsConnect(cred)).rejects.toThrow();
  // Crash the server and wipe its resolver folder: it comes back with only the preloaded (revocation-free) account.
  await h.nats.server.kill();
  const fs = await import('node:fs');
  const path = await import('node:path');
  for (const file of fs.readdirSync(path.join(h.nats.server.dir, 'accounts'))) fs.rmSync(path.join(h.nats.server.dir, 'accounts', file), { recursive: true, force: true });
  await h.nats.server.restart();
  // The service reconnects and pushes the revocation list again; until then the token may work once.
  await eventually(
    'the revoked token to be refused again',
    async () => {
      try {
        const nc = await connect({ servers: h.nats.server.url, authenticator: deviceUserAuthenticator(cred), reconnect: false });
        await nc.close();
        return undefined;
      } catch (err) {
        // Only the server saying no counts; a server still coming up does not.
        return (err as { code?: string }).code === 'AUTHORIZATION_VIOLATION' ? true : undefined;
      }
    },
    20_000,
    200,
  );
  // Stays refused (it was not a transient failure).
  await expect(natsConnect(cred)).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
});

test('credential operations are counted by kind in iot_device_credential_operations_total', async () => {
  const count = async (operation: string) => {
    const metric = metrics.registry.getSingleMetric('iot_device_credential_operations_total');
    return (await metric!.get()).values.find((v) => v.labels.operation === operation)?.value ?? 0;
  };
  const before = { issue: await count('issue'), rotate: await count('rotate'), revoke: await count('revoke') };
  await newDevice('metered-1');
  await unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId: 'metered-1', expireTime: undefined, kind: CredentialKind.CREDENTIAL_KIND_UNSPECIFIED }, op());
  await unary(h.clients.credentials, h.clients.credentials.revokeCredential, { deviceId: 'metered-1' }, op());
  await unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices: [Device.fromPartial({ id: 'metered-2', name: 'x' }), Device.fromPartial({ id: 'metered-3', name: 'y' })], issueCredentials: true }, op());
  // A refused operation is not counted.
  await expect(unary(h.clients.credentials, h.clients.credentials.issueCredential, { deviceId: 'metered-2', expireTime: undefined, kind: CredentialKind.CREDENTIAL_KIND_UNSPECIFIED }, op())).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
  expect({ issue: await count('issue'), rotate: await count('rotate'), revoke: await count('revoke') }).toEqual({ issue: before.issue + 3, rotate: before.rotate + 1, revoke: before.revoke + 1 });
});

test('every credential expires: the default lifetime when none is asked, never past the maximum, and the server enforces it', async () => {
  const cred = await newDevice('ttl-1');
  const expires = cred.expireTime!.getTime();
  expect(expires - cred.issueTime!.getTime()).toBe(90 * 86_400_000);
  const claims = JSON.parse(Buffer.from(cred.token.split('.')[1], 'base64url').toString()) as { exp: number; nats: { allowed_connection_types: string[] } };
  expect(claims.exp).toBe(Math.floor(expires / 1000));
  expect(claims.nats.allowed_connection_types).toEqual(['MQTT']);
  const tooLong = await unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId: 'ttl-1', expireTime: new Date(Date.now() + 400 * 86_400_000), kind: MQTT }, op()).catch((e) => e);
  expect(tooLong.code).toBe(status.INVALID_ARGUMENT);
  expect(tooLong.details).toMatch(/DEVICE_CREDENTIAL_MAX_TTL_SECONDS/);
  // A short-lived one is refused by the server once expired.
  const brief = await rotate('ttl-1', NATS).then(() => unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId: 'ttl-1', expireTime: new Date(Date.now() + 2000), kind: NATS }, op()));
  (await natsConnect(brief.credential!)).close();
  while (Date.now() < brief.credential!.expireTime!.getTime() + 1000) await new Promise((r) => setTimeout(r, 200));
  await expect(natsConnect(brief.credential!)).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
});

test('after a restart of the device service, status is reconciled with the connections the server reports', async () => {
  const first = await newDevice('rc-1', NATS);
  const second = await newDevice('rc-2', NATS);
  const nc1 = await natsConnect(first);
  await eventually('rc-1 online', async () => (await getDevice('rc-1')).status === DeviceStatus.DEVICE_STATUS_ONLINE);
  await h.device.stop();
  // While no device service listens: rc-1 leaves, rc-2 arrives.
  await nc1.close();
  await natsConnect(second);
  const restarted = await startTestService(deviceService, h.env);
  const clients = deviceClients(restarted.address);
  cleanup.push(async () => {
    clients.close();
    await restarted.stop();
  });
  const read = (id: string) => unary(clients.devices, clients.devices.getDevice, { id }, { authorization: t.viewer.authorization }).then((r) => r.device!);
  expect((await read('rc-1')).status).toBe(DeviceStatus.DEVICE_STATUS_OFFLINE);
  expect((await read('rc-2')).status).toBe(DeviceStatus.DEVICE_STATUS_ONLINE);
});
