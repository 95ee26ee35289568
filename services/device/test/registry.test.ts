import { Metadata, status } from '@grpc/grpc-js';
import { rpcStatusDetails, serverStream, unary, DEVICE_DIRECTORY_BUCKET, deviceDirectoryKey } from '@iot-mesh/runtime';
import { DeviceDirectoryEntry } from '../../../gen/ts/iot/device/v1/directory';
import { Device, DeviceEventType, DeviceStatus, WatchDevicesResponse, CredentialState } from '../../../gen/ts/iot/device/v1/device';
import { TestTenant } from '../../../testing/signing';
import { DeviceHarness, eventually, startDeviceHarness } from './harness';

jest.setTimeout(60_000);

let h: DeviceHarness;
let a: TestTenant;
let b: TestTenant;

beforeAll(async () => {
  h = await startDeviceHarness();
  [a, b] = await Promise.all([h.signing.createTenant(), h.signing.createTenant()]);
});
afterAll(async () => {
  await h?.stop();
});

function violations(err: { metadata?: Metadata }): string[] {
  return rpcStatusDetails(err.metadata).fieldViolations.map((v) => v.field);
}

async function rejection(promise: Promise<unknown>): Promise<{ code: number; details: string; metadata?: Metadata }> {
  try {
    await promise;
  } catch (err) {
    return err as { code: number; details: string; metadata?: Metadata };
  }
  throw new Error('expected the call to fail');
}

const create = (tenant: TestTenant, device: Partial<Device>) =>
  unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial(device) }, { authorization: tenant.operator.authorization }).then((r) => r.device!);

test('create, get, update with a field mask, delete; the directory follows', async () => {
  const created = await create(a, { id: 'thermo-1', name: 'Thermometer 1', type: 'thermometer', labels: { site: 'lab', floor: '2' } });
  expect(created).toMatchObject({ id: 'thermo-1', tenantId: a.tenantId, name: 'Thermometer 1', credentialState: CredentialState.CREDENTIAL_STATE_NONE, status: DeviceStatus.DEVICE_STATUS_OFFLINE });
  const generated = await create(a, { name: 'No id' });
  expect(generated.id).toMatch(/^[0-9a-f-]{36}$/);

  const got = await unary(h.clients.devices, h.clients.devices.getDevice, { id: 'thermo-1' }, { authorization: a.viewer.authorization });
  expect(got.device!.labels).toEqual({ site: 'lab', floor: '2' });

  const kv = await h.platform.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET);
  const entry = DeviceDirectoryEntry.decode((await kv.get(deviceDirectoryKey(a.tenantId, 'thermo-1')))!.value);
  expect(entry).toEqual({ tenantId: a.tenantId, deviceId: 'thermo-1', name: 'Thermometer 1', type: 'thermometer', labels: { site: 'lab', floor: '2' }, credentialState: CredentialState.CREDENTIAL_STATE_NONE, updateTime: created.updateTime, deviceTypeId: '', unknownMetricPolicy: 0, metrics: [], defaultAlertRules: [] });

  // Only the masked field changes; a read right after the update never sees the old value (cache).
  const updated = await unary(
    h.clients.devices,
    h.clients.devices.updateDevice,
    { device: Device.fromPartial({ id: 'thermo-1', name: 'ignored', labels: { site: 'roof' } }), updateMask: ['labels'] },
    { authorization: a.operator.authorization },
  );
  expect(updated.device).toMatchObject({ name: 'Thermometer 1', labels: { site: 'roof' } });
  for (let i = 0; i < 5; i++) {
    const name = `Thermometer v${i}`;
    await unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'thermo-1', name }), updateMask: ['name'] }, { authorization: a.operator.authorization });
    const read = await unary(h.clients.devices, h.clients.devices.getDevice, { id: 'thermo-1' }, { authorization: a.viewer.authorization });
    expect(read.device!.name).toBe(name);
  }
  const updatedEntry = DeviceDirectoryEntry.decode((await kv.get(deviceDirectoryKey(a.tenantId, 'thermo-1')))!.value);
  expect(updatedEntry).toMatchObject({ name: 'Thermometer v4', labels: { site: 'roof' } });

  await unary(h.clients.devices, h.clients.devices.deleteDevice, { id: 'thermo-1' }, { authorization: a.operator.authorization });
  expect((await rejection(unary(h.clients.devices, h.clients.devices.getDevice, { id: 'thermo-1' }, { authorization: a.viewer.authorization }))).code).toBe(status.NOT_FOUND);
  const gone = await kv.get(deviceDirectoryKey(a.tenantId, 'thermo-1'));
  expect(gone === null || gone.operation !== 'PUT').toBe(true);
});

test('invalid input yields INVALID_ARGUMENT with field violations; duplicates ALREADY_EXISTS', async () => {
  const bad = await rejection(create(a, { id: 'Bad.Id*', name: '', labels: { 'bad key!': 'x' } }));
  expect(bad.code).toBe(status.INVALID_ARGUMENT);
  expect(violations(bad).sort()).toEqual(['device.id', 'device.labels[bad key!]', 'device.name'].sort());

  await create(a, { id: 'dup-1', name: 'Dup' });
  expect((await rejection(create(a, { id: 'dup-1', name: 'Dup again' }))).code).toBe(status.ALREADY_EXISTS);

  const mask = await rejection(
    unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'dup-1', name: 'x' }), updateMask: ['tenant_id'] }, { authorization: a.operator.authorization }),
  );
  expect(mask.code).toBe(status.INVALID_ARGUMENT);
  expect(violations(mask)).toContain('update_mask');

  const tooMany = await rejection(
    unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices: Array.from({ length: 1001 }, (_, i) => Device.fromPartial({ name: `d${i}` })), issueCredentials: false }, { authorization: a.operator.authorization }),
  );
  expect(tooMany.code).toBe(status.INVALID_ARGUMENT);
  expect(violations(tooMany)).toEqual(['devices']);

  const repeated = await rejection(
    unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices: [Device.fromPartial({ id: 'r1', name: 'a' }), Device.fromPartial({ id: 'r1', name: 'b' })], issueCredentials: false }, { authorization: a.operator.authorization }),
  );
  expect(violations(repeated)).toEqual(['devices[1].id']);
});

test('roles and tenants: viewers cannot write, nobody sees another tenant’s devices', async () => {
  await create(a, { id: 'private-1', name: 'Private' });
  expect((await rejection(unary(h.clients.devices, h.clients.devices.getDevice, { id: 'private-1' }))).code).toBe(status.UNAUTHENTICATED);
  expect((await rejection(create(Object.assign({}, a, { operator: a.viewer }), { name: 'nope' }))).code).toBe(status.PERMISSION_DENIED);

  const auth = { authorization: b.admin.authorization };
  const notFound = [
    unary(h.clients.devices, h.clients.devices.getDevice, { id: 'private-1' }, auth),
    unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'private-1', name: 'stolen' }), updateMask: ['name'] }, auth),
    unary(h.clients.devices, h.clients.devices.deleteDevice, { id: 'private-1' }, auth),
    unary(h.clients.twin, h.clients.twin.getTwin, { deviceId: 'private-1' }, auth),
    unary(h.clients.twin, h.clients.twin.updateDesired, { deviceId: 'private-1', desired: { a: 1 }, expectedVersion: 0n }, auth),
    unary(h.clients.commands, h.clients.commands.sendCommand, { deviceId: 'private-1', name: 'ping', payload: undefined, timeout: undefined }, auth),
    unary(h.clients.commands, h.clients.commands.listCommands, { deviceId: 'private-1', page: undefined }, auth),
    unary(h.clients.credentials, h.clients.credentials.issueCredential, { deviceId: 'private-1', expireTime: undefined, kind: 0 }, auth),
    unary(h.clients.credentials, h.clients.credentials.rotateCredential, { deviceId: 'private-1', expireTime: undefined, kind: 0 }, auth),
    unary(h.clients.credentials, h.clients.credentials.revokeCredential, { deviceId: 'private-1' }, auth),
  ];
  for (const call of notFound) expect((await rejection(call)).code).toBe(status.NOT_FOUND);
  const listed = await unary(h.clients.devices, h.clients.devices.listDevices, { page: { pageSize: 1000, pageToken: '' }, labels: {}, status: 0, namePrefix: '', type: '', groupId: '', deviceTypeId: '', orderBy: '' }, auth);
  expect(listed.devices.map((d) => d.id)).not.toContain('private-1');
  // Still there, unchanged, for its own tenant.
  const own = await unary(h.clients.devices, h.clients.devices.getDevice, { id: 'private-1' }, { authorization: a.viewer.authorization });
  expect(own.device!.name).toBe('Private');
});

test('list filters by labels, status, name prefix and type', async () => {
  const c = await h.signing.createTenant();
  const devices = [
    { id: 'w-1', name: 'Weather north', type: 'weather', labels: { site: 'north', tier: 'gold' } },
    { id: 'w-2', name: 'Weather south', type: 'weather', labels: { site: 'south', tier: 'gold' } },
    { id: 'p-1', name: 'Power 50%_a', type: 'power', labels: { site: 'north' } },
  ];
  await unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices: devices.map((d) => Device.fromPartial(d)), issueCredentials: false }, { authorization: c.operator.authorization });
  const list = async (filter: { labels?: Record<string, string>; status?: DeviceStatus; namePrefix?: string; type?: string }) =>
    (
      await unary(
        h.clients.devices,
        h.clients.devices.listDevices,
        { page: undefined, labels: filter.labels ?? {}, status: filter.status ?? 0, namePrefix: filter.namePrefix ?? '', type: filter.type ?? '', groupId: '', deviceTypeId: '', orderBy: '' },
        { authorization: c.viewer.authorization },
      )
    ).devices.map((d) => d.id);
  expect(await list({})).toEqual(['w-1', 'w-2', 'p-1']);
  expect(await list({ labels: { site: 'north' } })).toEqual(['w-1', 'p-1']);
  expect(await list({ labels: { site: 'north', tier: 'gold' } })).toEqual(['w-1']);
  expect(await list({ namePrefix: 'Weather' })).toEqual(['w-1', 'w-2']);
  expect(await list({ namePrefix: 'Power 50%_' })).toEqual(['p-1']);
  expect(await list({ namePrefix: 'Power 5_' })).toEqual([]);
  expect(await list({ type: 'power' })).toEqual(['p-1']);
  expect(await list({ status: DeviceStatus.DEVICE_STATUS_OFFLINE })).toHaveLength(3);
  expect(await list({ status: DeviceStatus.DEVICE_STATUS_ONLINE })).toEqual([]);
});

test('page tokens return every device exactly once while devices are inserted', async () => {
  const c = await h.signing.createTenant();
  const auth = { authorization: c.operator.authorization };
  const initial = Array.from({ length: 60 }, (_, i) => Device.fromPartial({ id: `pg-${i}`, name: `Paged ${i}` }));
  await unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices: initial, issueCredentials: false }, auth);
  const seen: string[] = [];
  let token = '';
  let inserted = 0;
  do {
    const page = await unary(h.clients.devices, h.clients.devices.listDevices, { page: { pageSize: 7, pageToken: token }, labels: {}, status: 0, namePrefix: '', type: '', groupId: '', deviceTypeId: '', orderBy: '' }, auth);
    seen.push(...page.devices.map((d) => d.id));
    token = page.page!.nextPageToken;
    // Concurrent writers insert while the client pages.
    await Promise.all([0, 1, 2].map(() => create(c, { id: `new-${inserted++}`, name: 'Inserted meanwhile' })));
  } while (token && seen.length < 1000);
  expect(new Set(seen).size).toBe(seen.length);
  for (const d of initial) expect(seen).toContain(d.id);
  expect((await rejection(unary(h.clients.devices, h.clients.devices.listDevices, { page: { pageSize: 7, pageToken: 'garbage' }, labels: {}, status: 0, namePrefix: '', type: '', groupId: '', deviceTypeId: '', orderBy: '' }, auth))).code).toBe(
    status.INVALID_ARGUMENT,
  );
});

test('bulk create of 1000 devices with credentials', async () => {
  const c = await h.signing.createTenant();
  const devices = Array.from({ length: 1000 }, (_, i) => Device.fromPartial({ id: `bulk-${i}`, name: `Bulk ${i}`, type: 'sensor', labels: { batch: 'one' } }));
  const response = await unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices, issueCredentials: true }, { authorization: c.operator.authorization, deadlineMs: 60_000 });
  expect(response.devices).toHaveLength(1000);
  expect(response.credentials.map((cr) => cr.deviceId)).toEqual(devices.map((d) => d.id));
  expect(new Set(response.credentials.map((cr) => cr.token)).size).toBe(1000);
  expect(response.devices.every((d) => d.credentialState === CredentialState.CREDENTIAL_STATE_ACTIVE)).toBe(true);
  expect(response.credentials[5].publishSubjects).toEqual([`iot.${c.tenantId}.dev.bulk-5.tel`, `iot.${c.tenantId}.dev.bulk-5.state`, `iot.${c.tenantId}.dev.bulk-5.cmd.reply`]);
  const kv = await h.platform.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET);
  const last = DeviceDirectoryEntry.decode((await kv.get(deviceDirectoryKey(c.tenantId, 'bulk-999')))!.value);
  expect(last).toMatchObject({ deviceId: 'bulk-999', credentialState: CredentialState.CREDENTIAL_STATE_ACTIVE, labels: { batch: 'one' } });
  // All or nothing: a batch with one existing id creates none.
  const retry = await rejection(
    unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices: [Device.fromPartial({ id: 'fresh-1', name: 'x' }), Device.fromPartial({ id: 'bulk-3', name: 'x' })], issueCredentials: false }, { authorization: c.operator.authorization }),
  );
  expect(retry.code).toBe(status.ALREADY_EXISTS);
  expect((await rejection(unary(h.clients.devices, h.clients.devices.getDevice, { id: 'fresh-1' }, { authorization: c.viewer.authorization }))).code).toBe(status.NOT_FOUND);
});

test('WatchDevices streams created, updated and deleted events of the caller’s tenant only', async () => {
  const c = await h.signing.createTenant();
  const stream = serverStream(h.clients.devices, h.clients.devices.watchDevices, { deviceIds: [], labels: { watch: 'yes' }, changesOnly: false }, { authorization: c.viewer.authorization });
  const received: WatchDevicesResponse[] = [];
  stream.on('data', (e: WatchDevicesResponse) => received.push(e));
  stream.on('error', () => undefined);
  // The stream has no handshake: create probes until the subscription is live.
  let probe = 0;
  await eventually('the watch stream to deliver', async () => {
    await create(c, { id: `probe-${probe++}`, name: 'probe', labels: { watch: 'yes' } });
    await new Promise((r) => setTimeout(r, 100));
    return received.length > 0 || undefined;
  });
  await create(b, { id: 'other-tenant', name: 'x', labels: { watch: 'yes' } });
  await create(c, { id: 'unlabelled', name: 'x' });
  await create(c, { id: 'watched', name: 'Watched', labels: { watch: 'yes' } });
  await unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'watched', name: 'Renamed', labels: { watch: 'yes' } }), updateMask: ['name'] }, { authorization: c.operator.authorization });
  await unary(h.clients.devices, h.clients.devices.deleteDevice, { id: 'watched' }, { authorization: c.operator.authorization });
  const forWatched = await eventually('three events of the watched device', () => {
    const events = received.filter((e) => e.device?.id === 'watched');
    return events.length >= 3 ? events : undefined;
  });
  expect(forWatched.map((e) => e.type)).toEqual([DeviceEventType.DEVICE_EVENT_TYPE_CREATED, DeviceEventType.DEVICE_EVENT_TYPE_UPDATED, DeviceEventType.DEVICE_EVENT_TYPE_DELETED]);
  expect(forWatched[1].device!.name).toBe('Renamed');
  expect(received.some((e) => e.device?.id === 'other-tenant' || e.device?.id === 'unlabelled')).toBe(false);
  stream.cancel();
});

test('device events on NATS are binary WatchDevicesResponse on iot.<tenant>.evt.device.<kind>', async () => {
  const c = await h.signing.createTenant();
  const sub = h.platform.subscribe(`iot.${c.tenantId}.evt.device.>`, { max: 1 });
  await h.platform.flush();
  const created = await create(c, { id: 'evt-1', name: 'Evented', labels: { k: 'v' } });
  let message: { subject: string; data: Uint8Array } | undefined;
  for await (const m of sub) message = m;
  expect(message!.subject).toBe(`iot.${c.tenantId}.evt.device.created`);
  // Binary Protobuf, not JSON: a JSON object would start with '{'.
  expect(message!.data[0]).not.toBe(0x7b);
  const event = WatchDevicesResponse.decode(message!.data);
  expect(event.type).toBe(DeviceEventType.DEVICE_EVENT_TYPE_CREATED);
  expect(event.device).toEqual(created);
});
