import crypto from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { AggregateBucket, QueryGroupHistoryRequest, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { unary } from '@iot-mesh/runtime';
import { TestTenant } from '../../../testing/signing';
import { eventually, MonitoringWorld, protobufPayload, SignedWorld, startSignedWorld } from './harness';

jest.setTimeout(60_000);

let signed: SignedWorld;
let world: MonitoringWorld;
let a: TestTenant;
let b: TestTenant;
let telemetry: TelemetryServiceClient;

beforeAll(async () => {
  ({ world, a, b } = signed = await startSignedWorld());
  telemetry = signed.client(TelemetryServiceClient);
});
afterAll(() => signed?.close());

const MIN = 60_000;

/** A QueryGroupHistory request with the defaults filled in. */
function request(fields: Partial<QueryGroupHistoryRequest>): QueryGroupHistoryRequest {
  return QueryGroupHistoryRequest.fromPartial({ metric: 'temp', ...fields });
}

/** What a bucket of these points should hold, computed here independently of the store. */
function expected(points: { device: string; time: number; v: number }[], start: number, end: number, width: number) {
  const byBucket = new Map<number, { device: string; v: number }[]>();
  for (const p of points.filter((x) => x.time >= start && x.time < end)) {
    const at = Math.floor(p.time / width) * width;
    byBucket.set(at, [...(byBucket.get(at) ?? []), p]);
  }
  return [...byBucket.entries()]
    .sort(([x], [y]) => x - y)
    .map(([at, ps]) => {
      const vs = ps.map((p) => p.v);
      const sum = vs.reduce((x, y) => x + y, 0);
      return { start: at, min: Math.min(...vs), max: Math.max(...vs), sum, avg: sum / vs.length, count: vs.length, devices: new Set(ps.map((p) => p.device)).size };
    });
}

function plain(buckets: AggregateBucket[]) {
  return buckets.map((bk) => ({ start: bk.startTime!.getTime(), min: bk.min, max: bk.max, sum: bk.sum, avg: bk.avg, count: Number(bk.count), devices: bk.devices }));
}

test('a group history aggregates one metric across the members the group selects, per bucket and per device', async () => {
  const group = crypto.randomUUID();
  await world.putGroup(a.tenantId, group, { wing: 'east' });
  await world.registerDevice(a.tenantId, 'e1', { labels: { wing: 'east' }, type: 'meter' });
  await world.registerDevice(a.tenantId, 'e2', { labels: { wing: 'east' }, type: 'sensor' });
  await world.registerDevice(a.tenantId, 'e3', { labels: { wing: 'east' }, type: 'sensor' }); // a member without points
  await world.registerDevice(a.tenantId, 'w1', { labels: { wing: 'west' }, type: 'meter' });
  const base = Math.floor((Date.now() - 60 * MIN) / MIN) * MIN;
  const points = [
    ...[1, 3, 8, 2, 7, 4].map((v, i) => ({ device: 'e1', time: base + i * 25_000, v })),
    ...[10, -2, 6, 5].map((v, i) => ({ device: 'e2', time: base + 10_000 + i * 40_000, v })),
  ];
  const outsider = { device: 'w1', time: base + 5_000, v: 1000 };
  for (const p of [...points, outsider]) {
    await world.publish(a.tenantId, p.device, protobufPayload({ messageId: `${p.device}-${p.time}`, points: [{ metric: 'temp', time: new Date(p.time), numberValue: p.v }, { metric: 'hum', time: new Date(p.time), numberValue: 99 }] }));
  }
  await eventually(async () => (await world.rowCount(a.tenantId)) >= 2 * (points.length + 1), 'rows');
  const viewer = { authorization: a.viewer.authorization };
  const range = { start: new Date(base), end: new Date(base + 3 * MIN) };

  // Per minute: answered from the minute rollups.
  const perMinute = await eventually(
    () => unary(telemetry, telemetry.queryGroupHistory, request({ groupId: group, timeRange: range, bucketWidth: { seconds: 60n, nanos: 0 }, perDevice: true }), viewer).then((r) => (r.memberCount === 3 ? r : undefined)).catch(() => undefined),
    'the group and its members known to monitoring',
  );
  expect(perMinute.bucketWidth).toEqual({ seconds: 60n, nanos: 0 });
  expect(plain(perMinute.buckets)).toEqual(expected(points, base, base + 3 * MIN, MIN));
  expect(perMinute.devices.map((d) => d.deviceId)).toEqual(['e1', 'e2']);
  for (const d of perMinute.devices) expect(plain(d.buckets)).toEqual(expected(points.filter((p) => p.device === d.deviceId), base, base + 3 * MIN, MIN));

  // Buckets no rollup divides (and a range starting mid-minute): answered from raw points, without per-device series unless asked.
  const start = base + 20_000;
  const raw = await unary(telemetry, telemetry.queryGroupHistory, request({ groupId: group, timeRange: { start: new Date(start), end: range.end }, bucketWidth: { seconds: 45n, nanos: 0 } }), viewer);
  expect(plain(raw.buckets)).toEqual(expected(points, start, base + 3 * MIN, 45_000));
  expect(raw.devices).toEqual([]);

  // Only the members of one device type.
  const meters = await unary(telemetry, telemetry.queryGroupHistory, request({ groupId: group, deviceType: 'meter', timeRange: range, bucketWidth: { seconds: 180n, nanos: 0 } }), viewer);
  expect(meters.memberCount).toBe(1);
  expect(plain(meters.buckets)).toEqual(expected(points.filter((p) => p.device === 'e1'), base, base + 3 * MIN, 3 * MIN));

  // A device relabelled out of the group leaves it at once; its points no longer count.
  await world.registerDevice(a.tenantId, 'e2', { labels: { wing: 'west' }, type: 'sensor' });
  const after = await eventually(
    () => unary(telemetry, telemetry.queryGroupHistory, request({ groupId: group, timeRange: range, bucketWidth: { seconds: 60n, nanos: 0 } }), viewer).then((r) => (r.memberCount === 2 ? r : undefined)),
    'e2 out of the group',
  );
  expect(plain(after.buckets)).toEqual(expected(points.filter((p) => p.device === 'e1'), base, base + 3 * MIN, MIN));

  // Another tenant's group is NOT_FOUND, as is one that does not exist.
  await expect(unary(telemetry, telemetry.queryGroupHistory, request({ groupId: group, timeRange: range }), { authorization: b.viewer.authorization })).rejects.toMatchObject({ code: status.NOT_FOUND });
  await expect(unary(telemetry, telemetry.queryGroupHistory, request({ groupId: crypto.randomUUID(), timeRange: range }), viewer)).rejects.toMatchObject({ code: status.NOT_FOUND });
});

test('a group history refuses bad requests with field violations and groups above the member limit', async () => {
  const viewer = { authorization: a.viewer.authorization };
  const group = crypto.randomUUID();
  const bad = [
    [request({ groupId: 'not-a-group' }), 'group_id'],
    [request({ groupId: group, metric: '' }), 'metric'],
    [request({ groupId: group, metric: 'bad metric' }), 'metric'],
    [request({ groupId: group, deviceType: 'a.b' }), 'device_type'],
    [request({ groupId: group, maxPoints: 1001 }), 'max_points'],
    [request({ groupId: group, timeRange: { start: new Date(0), end: new Date(2 * 86_400_000) }, bucketWidth: { seconds: 60n, nanos: 0 } }), 'bucket_width'],
  ] as const;
  for (const [req, field] of bad) {
    await expect(unary(telemetry, telemetry.queryGroupHistory, req, viewer)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining(field) });
  }

  const big = crypto.randomUUID();
  await world.putGroup(a.tenantId, big, { fleet: 'big' });
  for (let i = 0; i < 501; i += 50) await Promise.all(Array.from({ length: Math.min(50, 501 - i) }, (_, j) => world.registerDevice(a.tenantId, `big-${i + j}`, { labels: { fleet: 'big' } })));
  const refused = await eventually(
    () => unary(telemetry, telemetry.queryGroupHistory, request({ groupId: big }), viewer).then(() => undefined, (err: { code: number; details: string }) => (err.code === status.FAILED_PRECONDITION ? err : undefined)),
    'the 501st member known',
  );
  expect(refused.details).toContain('at most 500');
  // A device type narrowing the group below the limit is answered.
  await world.registerDevice(a.tenantId, 'big-0', { labels: { fleet: 'big' }, type: 'meter' });
  const narrowed = await eventually(
    () => unary(telemetry, telemetry.queryGroupHistory, request({ groupId: big, deviceType: 'meter' }), viewer).then((r) => (r.memberCount === 1 ? r : undefined)),
    'the meter of the big group',
  );
  expect(narrowed.buckets).toEqual([]);
});
