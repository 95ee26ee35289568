import { Metadata, status } from '@grpc/grpc-js';
import { Client } from 'pg';
import { rpcStatusDetails, serverStream, unary } from '@iot-mesh/runtime';
import { Device, DeviceEventType, ListDevicesRequest, WatchDevicesResponse } from '../../../gen/ts/iot/device/v1/device';
import { TestTenant } from '../../../testing/signing';
import { DeviceHarness, eventually, startDeviceHarness } from './harness';

jest.setTimeout(60_000);

let h: DeviceHarness;
let t: TestTenant;

beforeAll(async () => {
  h = await startDeviceHarness();
  t = await h.signing.createTenant();
  // 40 devices whose names do not follow creation order, a third of them seen (in yet another order).
  const devices = Array.from({ length: 40 }, (_, i) => Device.fromPartial({ id: `o-${String(i).padStart(2, '0')}`, name: `dev ${String((i * 17) % 40).padStart(2, '0')}`, type: i % 2 ? 'odd' : 'even', labels: { half: i < 20 ? 'a' : 'b' } }));
  await unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices, issueCredentials: false }, { authorization: t.operator.authorization });
  const db = new Client({ connectionString: h.db.url });
  await db.connect();
  try {
    // Several devices share a last-seen time (ties go by creation order); the rest were never seen.
    await db.query(`UPDATE device.devices SET last_seen_time = '2026-01-01T00:00:00Z'::timestamptz + ((substr(id, 3)::int % 5) * interval '1.000123 s') WHERE tenant_id = $1 AND substr(id, 3)::int % 3 = 0`, [t.tenantId]);
  } finally {
    await db.end();
  }
});
afterAll(async () => {
  await h?.stop();
});

const request = (fields: Partial<ListDevicesRequest>): ListDevicesRequest => ListDevicesRequest.fromPartial(fields);

async function rejection(promise: Promise<unknown>): Promise<{ code: number; metadata?: Metadata }> {
  try {
    await promise;
  } catch (err) {
    return err as { code: number; metadata?: Metadata };
  }
  throw new Error('expected the call to fail');
}

/** Every device of the tenant in `orderBy`, read `size` at a time through page tokens. */
async function pages(orderBy: string, size: number, fields: Partial<ListDevicesRequest> = {}): Promise<Device[]> {
  const all: Device[] = [];
  let token = '';
  do {
    const res = await unary(h.clients.devices, h.clients.devices.listDevices, request({ ...fields, orderBy, page: { pageSize: size, pageToken: token } }), { authorization: t.viewer.authorization });
    all.push(...res.devices);
    token = res.page!.nextPageToken;
  } while (token);
  return all;
}

const seq = (d: Device) => d.id;
const seen = (d: Device) => d.lastSeenTime?.getTime() ?? -Infinity;

test('order_by sorts on the server, ties by creation order, stable across page tokens', async () => {
  const byCreation = await pages('', 7);
  expect(byCreation.map(seq)).toEqual(Array.from({ length: 40 }, (_, i) => `o-${String(i).padStart(2, '0')}`));
  const cmp = (key: (d: Device) => string | number, desc: boolean) => (a: Device, b: Device) => {
    const [ka, kb] = [key(a), key(b)];
    const c = ka < kb ? -1 : ka > kb ? 1 : seq(a) < seq(b) ? -1 : 1;
    return desc ? -c : c;
  };
  const cases: Array<[string, (d: Device) => string | number, boolean]> = [
    ['name', (d) => d.name, false],
    ['name desc', (d) => d.name, true],
    ['type asc', (d) => d.type, false],
    ['create_time desc', (d) => d.id, true],
    ['last_seen_time', seen, false],
    ['last_seen_time desc', seen, true],
  ];
  for (const [orderBy, key, desc] of cases) {
    const expected = [...byCreation].sort(cmp(key, desc)).map(seq);
    // Page sizes that split runs of equal keys (5 devices share each last-seen time).
    for (const size of [3, 8, 100]) expect({ orderBy, size, ids: (await pages(orderBy, size)).map(seq) }).toEqual({ orderBy, size, ids: expected });
  }
  // Filters combine with the order.
  const half = await pages('name desc', 4, { labels: { half: 'b' }, type: 'odd' });
  expect(half.map(seq)).toEqual(byCreation.filter((d) => d.labels.half === 'b' && d.type === 'odd').sort(cmp((d) => d.name, true)).map(seq));
});

test('bad order_by is a field violation; a token belongs to its order', async () => {
  for (const orderBy of ['labels', 'name sideways', 'name desc extra', 'password']) {
    const err = await rejection(unary(h.clients.devices, h.clients.devices.listDevices, request({ orderBy }), { authorization: t.viewer.authorization }));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(rpcStatusDetails(err.metadata).fieldViolations.map((v) => v.field)).toContain('order_by');
  }
  const first = await unary(h.clients.devices, h.clients.devices.listDevices, request({ orderBy: 'name', page: { pageSize: 5, pageToken: '' } }), { authorization: t.viewer.authorization });
  const reused = await rejection(
    unary(h.clients.devices, h.clients.devices.listDevices, request({ orderBy: 'last_seen_time', page: { pageSize: 5, pageToken: first.page!.nextPageToken } }), { authorization: t.viewer.authorization }),
  );
  expect(reused.code).toBe(status.INVALID_ARGUMENT);
  const forged = Buffer.from(JSON.stringify(['1', 'last_seen_time', "'; DROP TABLE devices"])).toString('base64url');
  expect((await rejection(unary(h.clients.devices, h.clients.devices.listDevices, request({ orderBy: 'last_seen_time', page: { pageSize: 5, pageToken: forged } }), { authorization: t.viewer.authorization }))).code).toBe(
    status.INVALID_ARGUMENT,
  );
});

test('every order is served by an index (no sort step)', async () => {
  const db = new Client({ connectionString: h.db.url });
  await db.connect();
  try {
    await db.query('SET search_path = device');
    await db.query('SET enable_sort = off');
    await db.query('SET enable_seqscan = off');
    const keys: Record<string, string> = { name: 'name', type: 'type', status: 'status', create_time: 'create_time', last_seen_time: "COALESCE(last_seen_time, '-infinity'::timestamptz)" };
    for (const [field, key] of Object.entries(keys)) {
      for (const dir of ['ASC', 'DESC']) {
        const { rows } = await db.query(`EXPLAIN SELECT * FROM devices WHERE tenant_id = $1 AND (${key}, seq) > ($2, 0) ORDER BY ${key} ${dir}, seq ${dir} LIMIT 201`, [t.tenantId, field.endsWith('_time') ? '-infinity' : '']);
        const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
        expect({ field, dir, sorts: /\bSort\b/.test(plan) }).toEqual({ field, dir, sorts: false });
      }
    }
  } finally {
    await db.end();
  }
});

test('CountDevices counts what ListDevices would list over all its pages', async () => {
  const count = async (fields: Partial<ListDevicesRequest>) => {
    const res = await unary(h.clients.devices, h.clients.devices.countDevices, { labels: {}, status: 0, namePrefix: '', type: '', groupId: '', deviceTypeId: '', ...fields }, { authorization: t.viewer.authorization });
    return Number(res.count);
  };
  expect(await count({})).toBe(40);
  expect(await count({ labels: { half: 'a' } })).toBe(20);
  expect(await count({ type: 'odd', labels: { half: 'a' } })).toBe((await pages('', 50, { type: 'odd', labels: { half: 'a' } })).length);
  expect(await count({ namePrefix: 'dev 1' })).toBe(10);
  const other = await h.signing.createTenant();
  expect(Number((await unary(h.clients.devices, h.clients.devices.countDevices, { labels: {}, status: 0, namePrefix: '', type: '', groupId: '', deviceTypeId: '' }, { authorization: other.viewer.authorization })).count)).toBe(0);
});

test('WatchDevices sends the matching devices first, then SNAPSHOT_COMPLETE, then changes; changes_only skips the snapshot', async () => {
  const watch = (fields: { deviceIds?: string[]; labels?: Record<string, string>; changesOnly?: boolean }) => {
    const stream = serverStream(h.clients.devices, h.clients.devices.watchDevices, { deviceIds: [], labels: {}, changesOnly: false, ...fields }, { authorization: t.viewer.authorization });
    const received: WatchDevicesResponse[] = [];
    stream.on('data', (e: WatchDevicesResponse) => received.push(e));
    stream.on('error', () => undefined);
    return { stream, received };
  };
  const byLabel = watch({ labels: { half: 'b' } });
  const byId = watch({ deviceIds: ['o-03', 'o-04', 'nope'] });
  const complete = (r: WatchDevicesResponse[]) => r.findIndex((e) => e.type === DeviceEventType.DEVICE_EVENT_TYPE_SNAPSHOT_COMPLETE);
  await eventually('both snapshots', () => (complete(byLabel.received) >= 0 && complete(byId.received) >= 0) || undefined);
  const snapshot = byLabel.received.slice(0, complete(byLabel.received));
  expect(snapshot.every((e) => e.type === DeviceEventType.DEVICE_EVENT_TYPE_SNAPSHOT)).toBe(true);
  expect(snapshot.map((e) => e.device!.id)).toEqual(Array.from({ length: 20 }, (_, i) => `o-${i + 20}`));
  expect(snapshot[0].device).toMatchObject({ name: 'dev 20', labels: { half: 'b' } });
  expect(byId.received.slice(0, complete(byId.received)).map((e) => e.device!.id)).toEqual(['o-03', 'o-04']);

  // The complete marker is a handshake: what changes after it is streamed.
  const changesOnly = watch({ labels: { half: 'b' }, changesOnly: true });
  await unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'o-21', name: 'renamed' }), updateMask: ['name'] }, { authorization: t.operator.authorization });
  const update = await eventually('the update', () => byLabel.received.find((e) => e.type === DeviceEventType.DEVICE_EVENT_TYPE_UPDATED));
  expect(update.device).toMatchObject({ id: 'o-21', name: 'renamed' });
  // A watch that skips the snapshot sends no SNAPSHOT messages (its subscription may start after the update, so only that is asserted).
  let probe = 0;
  await eventually('a change on the changes-only watch', async () => {
    await unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'o-22', name: `probe ${probe++}` }), updateMask: ['name'] }, { authorization: t.operator.authorization });
    await new Promise((r) => setTimeout(r, 100));
    return changesOnly.received.find((e) => e.device?.id === 'o-22');
  });
  expect(changesOnly.received.some((e) => e.type === DeviceEventType.DEVICE_EVENT_TYPE_SNAPSHOT || e.type === DeviceEventType.DEVICE_EVENT_TYPE_SNAPSHOT_COMPLETE)).toBe(false);
  for (const w of [byLabel, byId, changesOnly]) w.stream.cancel();
});
