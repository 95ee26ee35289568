import crypto from 'node:crypto';
import { status } from '@grpc/grpc-js';
import mqtt from 'mqtt';
import Redis from 'ioredis';
import { AlertServiceClient, AlertState, Comparison, Severity, StreamAlertsResponse, Alert } from '../../../gen/ts/iot/monitoring/v1/alerts';
import { Aggregation, StreamLiveResponse, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { deviceSubject, eventSubject, serverStream, unary } from '@iot-mesh/runtime';
import { TestTenant } from '../../../testing/signing';
import { TEST_REDIS_URL } from '../../../testing/test-services';
import { eventually, jsonPayload, MonitoringWorld, protobufPayload, SignedWorld, startSignedWorld } from './harness';

jest.setTimeout(60_000);

let signed: SignedWorld;
let world: MonitoringWorld;
let a: TestTenant;
let b: TestTenant;
let telemetry: TelemetryServiceClient;
let alerts: AlertServiceClient;

beforeAll(async () => {
  // The machine's Redis is shared by every test run: the default auth cache prefix keeps each signing deployment apart.
  ({ world, a, b } = signed = await startSignedWorld({ LIVE_CLIENT_BUFFER: '50', ALERT_CHECK_INTERVAL_MS: '100' }));
  telemetry = signed.client(TelemetryServiceClient);
  alerts = signed.client(AlertServiceClient);
  await world.registerDevice(a.tenantId, 'd1', { labels: { site: 'north' } });
  await world.registerDevice(a.tenantId, 'd2', { labels: { site: 'south' } });
  await world.registerDevice(a.tenantId, 'quiet');
});
afterAll(() => signed?.close());

const MIN = 60_000;

test('the shared auth caches in Redis are kept per signing deployment by default', async () => {
  await unary(telemetry, telemetry.getLatest, { deviceIds: [], metrics: [] }, { authorization: a.viewer.authorization });
  const redis = new Redis(TEST_REDIS_URL);
  try {
    // Another deployment's services (another signing address) never read these keys.
    expect(await redis.exists(`iot:auth:${signed.signing.address}:jwks`)).toBe(1);
  } finally {
    redis.disconnect();
  }
});

test('latest, history and raw points come back for the caller’s tenant only', async () => {
  const base = Math.floor((Date.now() - 30 * MIN) / MIN) * MIN;
  const values = Array.from({ length: 20 }, (_, i) => ({ time: base + i * 15_000, v: (i * 7) % 11 }));
  await world.publish(a.tenantId, 'd1', protobufPayload({ messageId: 'h1', points: values.map((x) => ({ metric: 'temp', time: new Date(x.time), numberValue: x.v })) }));
  await world.publish(a.tenantId, 'd1', jsonPayload({ messageId: 'h2', points: [{ metric: 'door', time: new Date(base).toISOString(), boolValue: true }] }));
  await eventually(async () => (await world.rowCount(a.tenantId)) >= 21, 'rows');
  const viewer = { authorization: a.viewer.authorization };

  const latest = await unary(telemetry, telemetry.getLatest, { deviceIds: ['d1'], metrics: [] }, viewer);
  expect(latest.points.map((p) => [p.metric, p.time!.getTime(), p.value])).toEqual([
    ['door', base, { boolValue: true }],
    ['temp', values[19].time, { numberValue: values[19].v }],
  ]);

  const history = await unary(
    telemetry,
    telemetry.queryHistory,
    {
      deviceId: 'd1',
      metrics: ['temp'],
      timeRange: { start: new Date(base), end: new Date(base + 5 * MIN) },
      bucketWidth: { seconds: 60n, nanos: 0 },
      maxPoints: 0,
      aggregations: [Aggregation.AGGREGATION_MAX, Aggregation.AGGREGATION_COUNT, Aggregation.AGGREGATION_AVG],
    },
    viewer,
  );
  expect(history.bucketWidth).toEqual({ seconds: 60n, nanos: 0 });
  const perMinute = [0, 1, 2, 3, 4].map((m) => values.filter((x) => x.time >= base + m * MIN && x.time < base + (m + 1) * MIN).map((x) => x.v));
  const series = Object.fromEntries(history.series.map((s) => [Aggregation[s.aggregation], s.buckets]));
  expect(series.AGGREGATION_MAX.map((bk) => bk.value)).toEqual(perMinute.map((vs) => Math.max(...vs)));
  expect(series.AGGREGATION_COUNT.map((bk) => bk.count)).toEqual(perMinute.map((vs) => BigInt(vs.length)));
  series.AGGREGATION_AVG.forEach((bk, i) => expect(bk.value).toBeCloseTo(perMinute[i].reduce((x, y) => x + y, 0) / perMinute[i].length, 9));

  const capped = await unary(telemetry, telemetry.queryHistory, { deviceId: 'd1', metrics: ['temp'], timeRange: { start: new Date(base), end: new Date(base + 5 * MIN) }, maxPoints: 3, aggregations: [] }, viewer);
  expect(capped.series[0].aggregation).toBe(Aggregation.AGGREGATION_AVG);
  expect(capped.series[0].buckets.length).toBeLessThanOrEqual(3);
  expect(capped.series[0].buckets.reduce((n, bk) => n + Number(bk.count), 0)).toBe(20);

  const seen: number[] = [];
  let pageToken = '';
  do {
    const page = await unary(telemetry, telemetry.listPoints, { deviceId: 'd1', metrics: ['temp'], timeRange: { start: new Date(base), end: new Date(base + 10 * MIN) }, page: { pageSize: 6, pageToken } }, viewer);
    seen.push(...page.points.map((p) => p.value!.numberValue!));
    pageToken = page.page!.nextPageToken;
  } while (pageToken);
  expect(seen).toEqual(values.map((x) => x.v));

  // Another tenant sees none of it; no credentials get nothing.
  expect((await unary(telemetry, telemetry.getLatest, { deviceIds: [], metrics: [] }, { authorization: b.viewer.authorization })).points).toEqual([]);
  const other = await unary(telemetry, telemetry.listPoints, { deviceId: 'd1', metrics: [], timeRange: { start: new Date(base), end: new Date(base + 10 * MIN) } }, { authorization: b.admin.authorization });
  expect(other.points).toEqual([]);
  await expect(unary(telemetry, telemetry.getLatest, { deviceIds: [], metrics: [] })).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
  await expect(unary(telemetry, telemetry.queryHistory, { deviceId: 'd1', metrics: [], maxPoints: 0, aggregations: [] }, viewer)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
});

/** Collects frames of a live stream. */
function openLive(authorization: string, request: { deviceIds?: string[]; labels?: Record<string, string>; metrics?: string[] }) {
  const frames: StreamLiveResponse[] = [];
  const call = serverStream(telemetry, telemetry.streamLive, { deviceIds: [], labels: {}, groupIds: [], metrics: [], ...request }, { authorization });
  call.on('data', (f: StreamLiveResponse) => frames.push(f));
  call.on('error', () => undefined);
  return { call, frames, points: () => frames.flatMap((f) => f.points), dropped: () => frames.reduce((n, f) => n + Number(f.droppedPoints), 0) };
}

test('live streams get points straight from NATS, filtered by device, labels and tenant', async () => {
  const byDevice = openLive(a.viewer.authorization, { deviceIds: ['d2'] });
  const byLabel = openLive(a.viewer.authorization, { labels: { site: 'north' }, metrics: ['speed'] });
  const otherTenant = openLive(b.viewer.authorization, {});
  await eventually(() => byDevice.frames.length > 0 && byLabel.frames.length > 0 && otherTenant.frames.length > 0, 'subscribed streams');
  // Core NATS publishes (also captured by the stream) — live does not wait for the database.
  world.nc.publish(deviceSubject(a.tenantId, 'd1', 'tel'), jsonPayload({ points: [{ metric: 'speed', numberValue: 1 }, { metric: 'temp', numberValue: 2 }] }));
  world.nc.publish(deviceSubject(a.tenantId, 'd2', 'tel'), protobufPayload({ points: [{ metric: 'speed', numberValue: 3 }] }));
  world.nc.publish(deviceSubject(a.tenantId, 'ghost', 'tel'), protobufPayload({ points: [{ metric: 'speed', numberValue: 4 }] }));
  await eventually(() => byDevice.points().length === 1 && byLabel.points().length === 1, 'live points');
  expect(byDevice.points().map((p) => [p.deviceId, p.metric, p.value])).toEqual([['d2', 'speed', { numberValue: 3 }]]);
  expect(byLabel.points().map((p) => [p.deviceId, p.metric, p.value])).toEqual([['d1', 'speed', { numberValue: 1 }]]);
  expect(otherTenant.points()).toEqual([]);
  for (const s of [byDevice, byLabel, otherTenant]) s.call.cancel();
});

test('a slow live client gets frames with dropped_points instead of growing server memory', async () => {
  const slow = openLive(a.viewer.authorization, { deviceIds: ['d1'], metrics: ['blob'] });
  await eventually(() => slow.frames.length > 0, 'subscribed stream');
  slow.call.pause();
  const total = 4000;
  const big = 'x'.repeat(2000);
  for (let m = 0; m < total / 100; m++) {
    world.nc.publish(deviceSubject(a.tenantId, 'd1', 'tel'), jsonPayload({ points: Array.from({ length: 100 }, (_, i) => ({ metric: 'blob', stringValue: `${m * 100 + i}${big}` })) }));
  }
  await world.nc.flush();
  // The server cannot send, so the per-client buffer (50 points here) overflows and counts what it drops.
  await eventually(() => world.services[0].stats.live.pointsDropped > 0, 'points dropped for the slow client');
  slow.call.resume();
  await eventually(() => slow.points().length + slow.dropped() === total, 'every point delivered or reported dropped');
  expect(slow.dropped()).toBeGreaterThan(0);
  // The newest points survive: the last one published is the last one received.
  const last = slow.points()[slow.points().length - 1];
  expect(parseInt(last.value!.stringValue!, 10)).toBe(total - 1);
  slow.call.cancel();
});

test('end to end: a device publishes over MQTT, a live stream sees it, history and latest return it', async () => {
  const live = openLive(a.viewer.authorization, { deviceIds: ['d1'], metrics: ['e2e'] });
  await eventually(() => live.frames.length > 0, 'subscribed stream');
  const device = await mqtt.connectAsync(world.nats.mqttUrl, { protocolVersion: 4, clientId: `e2e-${a.tenantId}`, reconnectPeriod: 0 });
  const t0 = Date.now() - 10_000;
  try {
    await device.publishAsync(`iot/${a.tenantId}/dev/d1/tel`, Buffer.from(jsonPayload({ messageId: 'e2e-1', points: [{ metric: 'e2e', time: new Date(t0).toISOString(), numberValue: 1.25 }] })), { qos: 1 });
    await device.publishAsync(`iot/${a.tenantId}/dev/d1/tel`, Buffer.from(protobufPayload({ messageId: 'e2e-2', points: [{ metric: 'e2e', time: new Date(t0 + 1000), numberValue: 2.75 }] })), { qos: 1 });
  } finally {
    await device.endAsync();
  }
  await eventually(() => live.points().length === 2, 'both points live');
  expect(live.points().map((p) => p.value!.numberValue)).toEqual([1.25, 2.75]);
  live.call.cancel();
  const viewer = { authorization: a.viewer.authorization };
  const latest = await eventually(async () => {
    const r = await unary(telemetry, telemetry.getLatest, { deviceIds: ['d1'], metrics: ['e2e'] }, viewer);
    return r.points.length === 1 && r.points[0].value!.numberValue === 2.75 && r;
  }, 'the latest value');
  expect(latest && latest.points[0].time!.getTime()).toBe(t0 + 1000);
  const history = await eventually(async () => {
    const r = await unary(telemetry, telemetry.queryHistory, { deviceId: 'd1', metrics: ['e2e'], timeRange: { start: new Date(t0 - 1000), end: new Date(t0 + 5000) }, maxPoints: 1, aggregations: [Aggregation.AGGREGATION_SUM] }, viewer);
    return r.series[0].buckets.length === 1 && r.series[0].buckets[0].count === 2n && r;
  }, 'history with both points');
  expect(history && history.series[0].buckets[0].value).toBe(4);
});

/** Opens StreamAlerts; resolves once the stream is proven live (a probe event published as another replica would arrives). */
async function openAlertStream(authorization: string, tenantId: string) {
  const received: Alert[] = [];
  let probed = false;
  const call = serverStream(alerts, alerts.streamAlerts, {}, { authorization });
  call.on('data', (r: StreamAlertsResponse) => {
    if (r.alert!.id === 'probe') probed = true;
    else received.push(r.alert!);
  });
  call.on('error', () => undefined);
  await eventually(() => {
    world.nc.publish(eventSubject(tenantId, 'alert', 'raised'), Alert.encode(Alert.fromPartial({ id: 'probe', tenantId })).finish());
    return probed;
  }, 'the alert stream');
  return { call, received };
}

test('threshold rules raise after the minimum duration and resolve only past the hysteresis; alerts are listed, acknowledged and streamed', async () => {
  const operator = { authorization: a.operator.authorization };
  const rule = {
    id: '',
    tenantId: '',
    name: 'hot',
    metric: 'temp',
    deviceIds: ['d2'],
    labels: {},
    groupIds: [],
    deviceTypeId: '',
    threshold: { comparison: Comparison.COMPARISON_GREATER_THAN, threshold: 30, hysteresis: 5, duration: { seconds: 10n, nanos: 0 } },
    severity: Severity.SEVERITY_CRITICAL,
    enabled: true,
  };
  await expect(unary(alerts, alerts.createAlertRule, { rule }, { authorization: a.viewer.authorization })).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
  await expect(unary(alerts, alerts.createAlertRule, { rule: { ...rule, threshold: { ...rule.threshold, hysteresis: -1 } } }, operator)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  const created = (await unary(alerts, alerts.createAlertRule, { rule }, operator)).rule!;
  expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
  expect((await unary(alerts, alerts.getAlertRule, { id: created.id }, { authorization: a.viewer.authorization })).rule!.threshold!.hysteresis).toBe(5);
  await expect(unary(alerts, alerts.getAlertRule, { id: created.id }, { authorization: b.admin.authorization })).rejects.toMatchObject({ code: status.NOT_FOUND });

  const stream = await openAlertStream(a.viewer.authorization, a.tenantId);
  const otherStream = await openAlertStream(b.viewer.authorization, b.tenantId);

  const t0 = Date.now() - 60_000;
  const sample = (dt: number, v: number) => world.nc.publish(deviceSubject(a.tenantId, 'd2', 'tel'), jsonPayload({ points: [{ metric: 'temp', time: new Date(t0 + dt).toISOString(), numberValue: v }] }));
  // Breach at 0 s, dip at 5 s (resets), breach again from 8 s to 12 s: only 4 s, no alert.
  sample(0, 35);
  sample(5_000, 29);
  sample(8_000, 35);
  sample(12_000, 36);
  await world.services[0].stats.alertsIdle();
  expect((await unary(alerts, alerts.listAlerts, { state: 0, deviceId: '', unacknowledgedOnly: false }, operator)).alerts).toEqual([]);
  // Still above at 18 s: held 10 s → raised with that value.
  sample(18_000, 32);
  await eventually(() => stream.received.length === 1, 'the raised event');
  expect(stream.received[0]).toMatchObject({ ruleId: created.id, deviceId: 'd2', state: AlertState.ALERT_STATE_RAISED, value: 32, severity: Severity.SEVERITY_CRITICAL });
  expect(stream.received[0].raiseTime!.getTime()).toBe(t0 + 18_000);
  // 28 is below 30 but not below 30 − 5: still raised. 24 resolves it.
  sample(20_000, 28);
  await world.services[0].stats.alertsIdle();
  expect(stream.received).toHaveLength(1);
  sample(22_000, 24);
  await eventually(() => stream.received.length === 2, 'the resolved event');
  expect(stream.received[1]).toMatchObject({ id: stream.received[0].id, state: AlertState.ALERT_STATE_RESOLVED });
  expect(stream.received[1].resolveTime!.getTime()).toBe(t0 + 22_000);

  const listed = await unary(alerts, alerts.listAlerts, { state: AlertState.ALERT_STATE_RESOLVED, deviceId: 'd2', unacknowledgedOnly: true }, { authorization: a.viewer.authorization });
  expect(listed.alerts.map((x) => x.id)).toEqual([stream.received[0].id]);
  const beforeAck = Date.now();
  const acked = (await unary(alerts, alerts.acknowledgeAlert, { id: stream.received[0].id }, operator)).alert!;
  const afterAck = Date.now();
  // Acknowledging records who and when, and leaves the alert's state alone.
  expect(acked).toMatchObject({ id: stream.received[0].id, state: AlertState.ALERT_STATE_RESOLVED, acknowledgedBy: a.operator.userId });
  expect(acked.acknowledgeTime!.getTime()).toBeGreaterThanOrEqual(beforeAck - 1000);
  expect(acked.acknowledgeTime!.getTime()).toBeLessThanOrEqual(afterAck + 1000);
  await eventually(() => stream.received.length === 3, 'the acknowledged event');
  expect(stream.received[2]).toMatchObject({ id: acked.id, state: AlertState.ALERT_STATE_RESOLVED, acknowledgedBy: a.operator.userId, acknowledgeTime: acked.acknowledgeTime });
  // It is stored so: the list shows it acknowledged by the same caller at the same time.
  const stored = (await unary(alerts, alerts.listAlerts, { state: AlertState.ALERT_STATE_RESOLVED, deviceId: 'd2', unacknowledgedOnly: false }, operator)).alerts;
  expect(stored).toEqual([expect.objectContaining({ id: acked.id, acknowledgedBy: a.operator.userId, acknowledgeTime: acked.acknowledgeTime })]);
  // A second acknowledgement (by another user) changes nothing and announces nothing.
  const again = (await unary(alerts, alerts.acknowledgeAlert, { id: acked.id }, { authorization: a.admin.authorization })).alert!;
  expect(again).toMatchObject({ acknowledgedBy: a.operator.userId, acknowledgeTime: acked.acknowledgeTime });
  // An event would take a NATS hop and a gRPC hop; give it ample time to show up if one were sent.
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(stream.received).toHaveLength(3);
  expect((await unary(alerts, alerts.listAlerts, { state: 0, deviceId: '', unacknowledgedOnly: true }, operator)).alerts).toEqual([]);
  await expect(unary(alerts, alerts.acknowledgeAlert, { id: stream.received[0].id }, { authorization: b.admin.authorization })).rejects.toMatchObject({ code: status.NOT_FOUND });
  expect((await unary(alerts, alerts.listAlerts, { state: 0, deviceId: '', unacknowledgedOnly: false }, { authorization: b.admin.authorization })).alerts).toEqual([]);
  expect(otherStream.received).toEqual([]);

  // Rules CRUD: update with a mask, list, delete.
  const updated = (await unary(alerts, alerts.updateAlertRule, { rule: { ...created, name: 'very hot', enabled: false }, updateMask: ['name'] }, operator)).rule!;
  expect(updated).toMatchObject({ name: 'very hot', enabled: true, metric: 'temp' });
  const listedRules = await unary(alerts, alerts.listAlertRules, { page: { pageSize: 10, pageToken: '' } }, { authorization: a.viewer.authorization });
  expect(listedRules.rules.map((r) => r.id)).toContain(created.id);
  await unary(alerts, alerts.deleteAlertRule, { id: created.id }, operator);
  await expect(unary(alerts, alerts.getAlertRule, { id: created.id }, operator)).rejects.toMatchObject({ code: status.NOT_FOUND });
  stream.call.cancel();
  otherStream.call.cancel();
});

test('no-data rules raise when a device goes quiet and resolve when it speaks again', async () => {
  const operator = { authorization: a.operator.authorization };
  const stream = await openAlertStream(a.viewer.authorization, a.tenantId);
  const created = (
    await unary(
      alerts,
      alerts.createAlertRule,
      { rule: { id: '', tenantId: '', name: 'silent', metric: 'heartbeat', deviceIds: ['quiet'], labels: {}, groupIds: [], deviceTypeId: '', noData: { timeout: { seconds: 1n, nanos: 0 } }, severity: Severity.SEVERITY_WARNING, enabled: true } },
      operator,
    )
  ).rule!;
  await eventually(() => stream.received.length === 1, 'the no-data alert');
  expect(stream.received[0]).toMatchObject({ ruleId: created.id, deviceId: 'quiet', state: AlertState.ALERT_STATE_RAISED });
  world.nc.publish(deviceSubject(a.tenantId, 'quiet', 'tel'), jsonPayload({ points: [{ metric: 'heartbeat', numberValue: 1 }] }));
  await eventually(() => stream.received.length === 2, 'the resolution');
  expect(stream.received[1]).toMatchObject({ id: stream.received[0].id, state: AlertState.ALERT_STATE_RESOLVED });
  await unary(alerts, alerts.deleteAlertRule, { id: created.id }, operator);
  stream.call.cancel();
});

test('an alert rule of a group applies to the devices that are its members when they send, without a restart', async () => {
  const operator = { authorization: a.operator.authorization };
  const group = crypto.randomUUID();
  await world.registerDevice(a.tenantId, 'ga', { labels: { wing: 'east' } });
  await world.registerDevice(a.tenantId, 'gb', { labels: { wing: 'west' } });
  await world.putGroup(a.tenantId, group, { wing: 'east' });
  const rule = {
    id: '',
    tenantId: '',
    name: 'east wing hot',
    metric: 'gtemp',
    deviceIds: [],
    labels: {},
    groupIds: [group],
    deviceTypeId: '',
    threshold: { comparison: Comparison.COMPARISON_GREATER_THAN, threshold: 50, hysteresis: 0, duration: { seconds: 0n, nanos: 0 } },
    severity: Severity.SEVERITY_WARNING,
    enabled: true,
  };
  // Groups are the caller's tenant's: unknown (or another tenant's) is NOT_FOUND; devices and groups together are refused.
  const foreign = crypto.randomUUID();
  await world.putGroup(b.tenantId, foreign, { wing: 'east' });
  await expect(unary(alerts, alerts.createAlertRule, { rule: { ...rule, groupIds: [foreign] } }, operator)).rejects.toMatchObject({ code: status.NOT_FOUND });
  await expect(unary(alerts, alerts.createAlertRule, { rule: { ...rule, deviceIds: ['ga'] } }, operator)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('rule.group_ids') });
  const created = await eventually(() => unary(alerts, alerts.createAlertRule, { rule }, operator).then((r) => r.rule!).catch(() => undefined), 'the rule created once monitoring knows the group');
  expect(created.groupIds).toEqual([group]);
  expect((await unary(alerts, alerts.getAlertRule, { id: created.id }, operator)).rule!.groupIds).toEqual([group]);

  const hot = (deviceId: string) => world.nc.publish(deviceSubject(a.tenantId, deviceId, 'tel'), jsonPayload({ points: [{ metric: 'gtemp', numberValue: 60 }] }));
  const raisedFor = async (deviceId: string) =>
    (await unary(alerts, alerts.listAlerts, { state: AlertState.ALERT_STATE_RAISED, deviceId, unacknowledgedOnly: false }, operator)).alerts.filter((x) => x.ruleId === created.id).length;
  hot('ga');
  hot('gb');
  await eventually(async () => (await raisedFor('ga')) === 1, 'the member raised');
  await world.services[0].stats.alertsIdle();
  expect(await raisedFor('gb')).toBe(0);

  // gb joins the group by its labels: its next breach raises.
  await world.registerDevice(a.tenantId, 'gb', { labels: { wing: 'east' } });
  await eventually(async () => {
    hot('gb');
    await world.services[0].stats.alertsIdle();
    return (await raisedFor('gb')) === 1;
  }, 'gb raised once it is a member');
  // An update to a group the tenant does not have is NOT_FOUND.
  await expect(unary(alerts, alerts.updateAlertRule, { rule: { ...created, groupIds: [foreign] }, updateMask: ['group_ids'] }, operator)).rejects.toMatchObject({ code: status.NOT_FOUND });
});
