/*
 * Documents from devices that PostgreSQL cannot store as sent (issue 13): a
 * command reply whose result is nested too deep or holds U+0000 / a lone
 * surrogate (in a key or a string), or whose error text holds one, must not
 * leave the command `pending` — it fails with the reason; such reported state
 * is dropped and the twin keeps its last good report.
 */
import { connect, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { unary } from '@iot-mesh/runtime';
import { CommandStatus } from '../../../gen/ts/iot/device/v1/command';
import { CredentialKind } from '../../../gen/ts/iot/device/v1/credential';
import { Device, DeviceStatus } from '../../../gen/ts/iot/device/v1/device';
import { TestTenant } from '../../../testing/signing';
import { DOCUMENT_MAX_DEPTH } from '../src/domain/twins';
import { DeviceHarness, eventually, startDeviceHarness } from './harness';

jest.setTimeout(90_000);

let h: DeviceHarness;
let t: TestTenant;
let device: NatsConnection;

/** Nested `levels` objects deep, as JSON text. */
const nested = (levels: number) => `${'{"a":'.repeat(levels - 1)}{"leaf":1}${'}'.repeat(levels - 1)}`;

/** What the device answers to each command name, as raw JSON text of the result. */
const RESULTS: Record<string, string> = {
  fine: '{"ok":"yes"}',
  'nul-string': '{"a":"x\\u0000y"}',
  'nul-key': '{"a\\u0000b":1}',
  'lone-surrogate': '{"a":["fine","\\ud800"]}',
  deep: nested(DOCUMENT_MAX_DEPTH + 1),
  'very-deep': nested(100_000),
  'at-depth-limit': nested(DOCUMENT_MAX_DEPTH),
};

beforeAll(async () => {
  h = await startDeviceHarness();
  t = await h.signing.createTenant();
  const op = { authorization: t.operator.authorization };
  await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id: 'hostile', name: 'hostile' }) }, op);
  const { credential } = await unary(h.clients.credentials, h.clients.credentials.issueCredential, { deviceId: 'hostile', expireTime: undefined, kind: CredentialKind.CREDENTIAL_KIND_NATS }, op);
  device = await connect({ servers: h.nats.server.url, authenticator: deviceUserAuthenticator(credential!), reconnect: false });
  device.subscribe(`iot.${t.tenantId}.dev.hostile.cmd`, {
    callback: (_e, m) => {
      const request = JSON.parse(new TextDecoder().decode(m.data));
      if (request.name === 'nul-error') m.respond(`{"commandId":"${request.commandId}","ok":false,"error":"bad\\u0000news"}`);
      else m.respond(`{"commandId":"${request.commandId}","ok":true,"result":${RESULTS[request.name]}}`);
    },
  });
  await device.flush();
  await eventually('online', async () => (await unary(h.clients.devices, h.clients.devices.getDevice, { id: 'hostile' }, op)).device!.status === DeviceStatus.DEVICE_STATUS_ONLINE);
});
afterAll(async () => {
  await device?.close();
  await h?.stop();
});

const send = (name: string) =>
  unary(h.clients.commands, h.clients.commands.sendCommand, { deviceId: 'hostile', name, payload: undefined, timeout: { seconds: 5n, nanos: 0 } }, { authorization: t.operator.authorization, deadlineMs: 20_000 }).then(
    (r) => r.command!,
  );

test.each(['nul-string', 'nul-key', 'lone-surrogate', 'deep', 'very-deep'])('a reply whose result is %s: the command fails with the reason, none stays pending', async (name) => {
  const command = await send(name);
  expect(command.status).toBe(CommandStatus.COMMAND_STATUS_FAILED);
  expect(command.error).toMatch(name === 'very-deep' ? /undecodable|nested deeper/ : name === 'deep' ? /nested deeper than 32/ : /U\+0000 or a lone surrogate/);
  const { commands } = await unary(h.clients.commands, h.clients.commands.listCommands, { deviceId: 'hostile', page: { pageSize: 100, pageToken: '' } }, { authorization: t.viewer.authorization });
  expect(commands.filter((c) => c.status === CommandStatus.COMMAND_STATUS_PENDING)).toEqual([]);
});

test('an error text holding U+0000 is kept with U+FFFD in its place; ordinary and limit-deep results are stored', async () => {
  expect(await send('nul-error')).toMatchObject({ status: CommandStatus.COMMAND_STATUS_FAILED, error: 'bad\ufffdnews' });
  expect(await send('fine')).toMatchObject({ status: CommandStatus.COMMAND_STATUS_SUCCEEDED, result: { ok: 'yes' } });
  expect((await send('at-depth-limit')).status).toBe(CommandStatus.COMMAND_STATUS_SUCCEEDED);
});

test('reported state nested too deep or holding U+0000 is dropped; the next good report is stored', async () => {
  const state = `iot.${t.tenantId}.dev.hostile.state`;
  device.publish(state, '{"reported":{"fw":"1\\u0000"}}');
  device.publish(state, `{"reported":${nested(DOCUMENT_MAX_DEPTH + 1)}}`);
  device.publish(state, '{"reported":{"fw":"2.0"}}');
  const twin = await eventually('the good report', async () => {
    const tw = (await unary(h.clients.twin, h.clients.twin.getTwin, { deviceId: 'hostile' }, { authorization: t.viewer.authorization })).twin!;
    return tw.reportedVersion > 0n ? tw : undefined;
  });
  // Reports of one subject arrive in order: the two bad ones came first and were dropped.
  expect([twin.reportedVersion, twin.reported]).toEqual([1n, { fw: '2.0' }]);
});
