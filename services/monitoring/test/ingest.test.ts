import mqtt from 'mqtt';
import { Msg } from 'nats';
import { deadLettersOf, deviceSubject } from '@iot-mesh/runtime';
import { DEAD_LETTER_HEADERS } from '../src/events/dead-letters';
import { DeadLetterReason } from '../src/events/telemetry-decoder';
import { eventually, jsonPayload, MonitoringWorld, newTenant, protobufPayload, startWorld } from './harness';

jest.setTimeout(60_000);

let world: MonitoringWorld;

beforeAll(async () => {
  world = await startWorld({ INGEST_MAX_PAYLOAD_BYTES: '4096', INGEST_MAX_POINTS: '50', INGEST_MAX_FUTURE_MS: '60000', INGEST_MAX_PAST_MS: '3600000', WRITER_BATCH_WAIT_MS: '200' });
});
afterAll(async () => {
  await world?.close();
});

async function points(tenantId: string) {
  const { rows } = await world.pool.query(
    `SELECT device_id, metric, time, number_value, bool_value, string_value FROM points WHERE tenant_id = $1 ORDER BY device_id, metric, time`,
    [tenantId],
  );
  return rows.map((r) => ({ device: r.device_id, metric: r.metric, time: r.time.getTime(), value: r.number_value ?? r.bool_value ?? r.string_value }));
}

test('stores JSON and Protobuf payloads with many points each, published over NATS', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const base = Date.now() - 60_000;
  await world.publish(
    t,
    'd1',
    jsonPayload({
      deviceId: 'd1',
      messageId: 'j1',
      points: [
        { metric: 'temp', time: new Date(base).toISOString(), numberValue: 21.5 },
        { metric: 'door', time: new Date(base).toISOString(), boolValue: true },
        { metric: 'mode', time: new Date(base).toISOString(), stringValue: 'eco' },
        { metric: 'hum', time: new Date(base).toISOString(), number_value: '40.25' },
      ],
    }),
  );
  await world.publish(
    t,
    'd1',
    protobufPayload({ messageId: 'p1', points: Array.from({ length: 30 }, (_, i) => ({ metric: 'temp', time: new Date(base + 1000 + i), numberValue: i })) }),
  );
  await eventually(async () => (await world.rowCount(t)) === 34, '34 rows');
  const rows = await points(t);
  expect(rows.filter((r) => r.metric !== 'temp')).toEqual([
    { device: 'd1', metric: 'door', time: base, value: true },
    { device: 'd1', metric: 'hum', time: base, value: 40.25 },
    { device: 'd1', metric: 'mode', time: base, value: 'eco' },
  ]);
  expect(rows.filter((r) => r.metric === 'temp').map((r) => r.value)).toEqual([21.5, ...Array.from({ length: 30 }, (_, i) => i)]);
});

test('stores payloads published over MQTT (JSON and Protobuf), points without time get the receive time', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'm1');
  const client = await mqtt.connectAsync(world.nats.mqttUrl, { protocolVersion: 4, clientId: `c${t}`, reconnectPeriod: 0 });
  try {
    const before = Date.now();
    await client.publishAsync(`iot/${t}/dev/m1/tel`, Buffer.from(jsonPayload({ messageId: 'mq1', points: [{ metric: 'temp', numberValue: 1.5 }] })), { qos: 1 });
    await client.publishAsync(`iot/${t}/dev/m1/tel`, Buffer.from(protobufPayload({ messageId: 'mq2', points: [{ metric: 'temp', numberValue: 2.5 }] })), { qos: 1 });
    await eventually(async () => (await world.rowCount(t)) === 2, '2 rows from MQTT');
    const rows = await points(t);
    expect(rows.map((r) => r.value).sort()).toEqual([1.5, 2.5]);
    for (const r of rows) {
      expect(r.time).toBeGreaterThanOrEqual(before - 1000);
      expect(r.time).toBeLessThanOrEqual(Date.now());
    }
  } finally {
    await client.endAsync();
  }
});

test('every bad input class is dead-lettered with its reason and original bytes; valid points around it are stored', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'good');
  await world.registerDevice(t, 'revoked', { credentialState: 'revoked' });
  await world.registerDevice(t, 'typed', { type: 'thermometer', onlyMetrics: ['temp'] });
  const stats = world.services[0].stats.ingest;
  const before = { ...stats.deadLetters };
  const dead: Msg[] = [];
  const sub = world.nc.subscribe(deadLettersOf(t), { callback: (_err, msg) => dead.push(msg) });
  await world.nc.flush();

  const now = Date.now();
  const valid = (id: string, value: number) => jsonPayload({ messageId: id, points: [{ metric: 'temp', time: new Date(now - 1000).toISOString(), numberValue: value }] });
  const bad: { reason: DeadLetterReason; device: string; data: Uint8Array }[] = [
    { reason: 'unknown_device', device: 'ghost', data: valid('u', 1) },
    { reason: 'revoked_device', device: 'revoked', data: valid('r', 1) },
    { reason: 'unknown_metric', device: 'typed', data: jsonPayload({ messageId: 'um', points: [{ metric: 'temp', numberValue: 1 }, { metric: 'humidity', numberValue: 40 }] }) },
    { reason: 'device_mismatch', device: 'good', data: jsonPayload({ deviceId: 'other', points: [{ metric: 'temp', numberValue: 1 }] }) },
    { reason: 'malformed', device: 'good', data: Buffer.from('{"points": [ {"metric": "temp", "numberValue": 1 ') },
    { reason: 'malformed', device: 'good', data: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]) },
    { reason: 'malformed', device: 'good', data: jsonPayload({ points: [{ metric: 'bad metric!', numberValue: 1 }] }) },
    { reason: 'malformed', device: 'good', data: jsonPayload({ points: [{ metric: 'temp', numberValue: 'abc' }] }) },
    { reason: 'oversize', device: 'good', data: jsonPayload({ points: [{ metric: 'temp', stringValue: 'x'.repeat(5000) }] }) },
    { reason: 'too_far_future', device: 'good', data: jsonPayload({ points: [{ metric: 'temp', time: new Date(now + 3_600_000).toISOString(), numberValue: 1 }] }) },
    { reason: 'too_far_past', device: 'good', data: protobufPayload({ points: [{ metric: 'temp', time: new Date(now - 2 * 3_600_000), numberValue: 1 }] }) },
    { reason: 'not_finite', device: 'good', data: jsonPayload({ points: [{ metric: 'temp', numberValue: 'NaN' }] }) },
    { reason: 'not_finite', device: 'good', data: protobufPayload({ points: [{ metric: 'temp', numberValue: Infinity }] }) },
    { reason: 'too_many_points', device: 'good', data: protobufPayload({ points: Array.from({ length: 51 }, () => ({ metric: 'temp', numberValue: 1 })) }) },
  ];
  // Valid messages before, between and after the bad ones, all in one burst (one or a few batches).
  await world.publish(t, 'good', valid('v0', 100));
  for (const [i, b] of bad.entries()) {
    await world.publish(t, b.device, b.data);
    await world.publish(t, 'good', valid(`v${i + 1}`, 101 + i));
  }
  await eventually(() => dead.length === bad.length, `${bad.length} dead letters`);
  await eventually(async () => (await world.rowCount(t)) === bad.length + 1, 'all valid rows');
  sub.unsubscribe();

  const byBody = new Map(dead.map((m) => [Buffer.from(m.data).toString('base64'), m]));
  for (const b of bad) {
    // An oversize payload's dead letter keeps its first 4096 bytes (DEAD_LETTER_PREFIX_BYTES) and says so.
    const kept = b.reason === 'oversize' ? b.data.subarray(0, 4096) : b.data;
    const msg = byBody.get(Buffer.from(kept).toString('base64'));
    if (b.reason === 'oversize') {
      expect(msg?.headers?.get(DEAD_LETTER_HEADERS.truncated)).toBe('true');
      expect(msg?.headers?.get(DEAD_LETTER_HEADERS.size)).toBe(String(b.data.byteLength));
    }
    expect(msg).toBeDefined();
    expect(msg!.headers?.get(DEAD_LETTER_HEADERS.reason)).toBe(b.reason);
    expect(msg!.headers?.get(DEAD_LETTER_HEADERS.subject)).toBe(deviceSubject(t, b.device, 'tel'));
    expect(msg!.headers?.get(DEAD_LETTER_HEADERS.detail)).toBeTruthy();
  }
  const expectedCounts: Partial<Record<DeadLetterReason, number>> = {};
  for (const b of bad) expectedCounts[b.reason] = (expectedCounts[b.reason] ?? 0) + 1;
  for (const [reason, n] of Object.entries(expectedCounts)) {
    expect(stats.deadLetters[reason as DeadLetterReason] - before[reason as DeadLetterReason]).toBe(n);
  }
  expect((await points(t)).map((r) => r.value as number).sort((a, b) => a - b)).toEqual(Array.from({ length: bad.length + 1 }, (_, i) => 100 + i));
});

test("a device type that dead-letters undeclared metrics: declared ones are stored, a message naming another goes whole to the dead letters", async () => {
  const t = newTenant();
  await world.registerDevice(t, 'strict', { type: 'thermometer', onlyMetrics: ['temp'] });
  await world.registerDevice(t, 'loose', { type: 'thermometer' });
  const dead: Msg[] = [];
  const sub = world.nc.subscribe(deadLettersOf(t), { callback: (_err, msg) => dead.push(msg) });
  await world.nc.flush();
  await world.publish(t, 'strict', jsonPayload({ messageId: 's1', points: [{ metric: 'temp', numberValue: 21 }] }));
  await world.publish(t, 'strict', jsonPayload({ messageId: 's2', points: [{ metric: 'temp', numberValue: 22 }, { metric: 'pressure', numberValue: 1013 }] }));
  // Without the policy (an untyped or accepting type), any metric is stored.
  await world.publish(t, 'loose', jsonPayload({ messageId: 'l1', points: [{ metric: 'pressure', numberValue: 1000 }] }));
  await eventually(() => dead.length === 1, 'one dead letter');
  await eventually(async () => (await world.rowCount(t)) === 2, 'two stored rows');
  sub.unsubscribe();
  expect(dead[0].headers?.get(DEAD_LETTER_HEADERS.reason)).toBe('unknown_metric');
  expect(dead[0].headers?.get(DEAD_LETTER_HEADERS.detail)).toContain('pressure');
  expect((await points(t)).map((r) => [r.device, r.metric, r.value]).sort()).toEqual([
    ['loose', 'pressure', 1000],
    ['strict', 'temp', 21],
  ]);
});

test('a repeated message id is stored once, with or without the Nats-Msg-Id header', async () => {
  const t = newTenant();
  await world.registerDevice(t, 'd1');
  const time = new Date(Date.now() - 5000).toISOString();
  const payload = jsonPayload({ messageId: 'same', points: [{ metric: 'temp', time, numberValue: 1 }, { metric: 'hum', time, numberValue: 2 }] });
  // JetStream dedupes the header copies; the store dedupes the header-less ones (as MQTT sends them).
  await world.publish(t, 'd1', payload, 'same');
  await world.publish(t, 'd1', payload, 'same');
  await world.publish(t, 'd1', payload);
  await world.publish(t, 'd1', protobufPayload({ messageId: 'same', points: [{ metric: 'temp', time: new Date(time), numberValue: 1 }, { metric: 'hum', time: new Date(time), numberValue: 2 }] }));
  await world.publish(t, 'd1', jsonPayload({ messageId: 'marker', points: [{ metric: 'marker', numberValue: 0 }] }));
  await eventually(async () => (await points(t)).some((r) => r.metric === 'marker'), 'the marker row');
  // Everything published before the marker has been processed by now (one consumer, in order).
  const stats = world.services[0].stats.ingest;
  await eventually(() => stats.queued === 0, 'an idle writer');
  expect((await points(t)).map((r) => r.metric)).toEqual(['hum', 'marker', 'temp']);
});
