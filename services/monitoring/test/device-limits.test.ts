/*
 * Per-device ingest limits (issue 13): a cap on distinct metric names per
 * device (MONITORING_MAX_METRICS_PER_DEVICE → `too_many_metrics`) and a
 * publish rate (MONITORING_DEVICE_RATE / _BURST → `rate_limited`). The excess
 * is acknowledged and dead-lettered, counted in iot_dead_letters_total.
 */
import { Msg } from 'nats';
import { deadLettersOf, deviceSubject, metrics } from '@iot-mesh/runtime';
import { DEAD_LETTER_HEADERS } from '../src/events/dead-letters';
import { DecodedTelemetry, DeviceLookup, IngestLimits, TelemetryDecoder } from '../src/events/telemetry-decoder';
import { KnownDevice } from '../src/domain/telemetry';
import { eventually, jsonPayload, MonitoringWorld, newTenant, startWorld } from './harness';

jest.setTimeout(60_000);

const LIMITS: IngestLimits = { maxPayloadBytes: 64 * 1024, maxPoints: 50, maxFutureMs: 60_000, maxPastMs: 3_600_000 };
const T0 = new Date('2026-06-01T12:00:00.000Z');

const everyone: DeviceLookup = {
  async lookup(tenantId: string, deviceId: string): Promise<KnownDevice> {
    return { tenantId, deviceId, labels: {}, revoked: false };
  },
};

function message(metricNames: string[], at = T0, device = 'd1') {
  return { subject: deviceSubject('t1', device, 'tel'), data: jsonPayload({ points: metricNames.map((metric) => ({ metric, numberValue: 1 })) }), receivedAt: at };
}

const reasonOf = (d: DecodedTelemetry) => (d.ok ? 'ok' : d.reason);

describe('the decoder', () => {
  test('admits new metric names up to the cap; known names keep working; a message adding one more is refused whole', async () => {
    const decoder = new TelemetryDecoder({ ...LIMITS, maxMetricsPerDevice: 3 }, everyone);
    const admit = (names: string[], device?: string) => decoder.decode(message(names, T0, device), { admit: true }).then(reasonOf);
    expect(await admit(['a', 'b'])).toBe('ok');
    expect(await admit(['c', 'a'])).toBe('ok');
    expect(await admit(['d'])).toBe('too_many_metrics');
    expect(await admit(['a', 'b', 'c', 'a'])).toBe('ok');
    // Another device has its own names.
    expect(await admit(['d', 'e', 'f'], 'd2')).toBe('ok');
    // A refused message's names were not learned.
    expect(await admit(['d'])).toBe('too_many_metrics');
  });

  test('readers that do not admit (live view, rules) see the cap but do not grow it', async () => {
    const decoder = new TelemetryDecoder({ ...LIMITS, maxMetricsPerDevice: 1 }, everyone);
    expect(reasonOf(await decoder.decode(message(['a'])))).toBe('ok');
    expect(reasonOf(await decoder.decode(message(['b']), { admit: true }))).toBe('ok');
    expect(reasonOf(await decoder.decode(message(['a'])))).toBe('too_many_metrics');
  });

  test('the names a device already has stored count against the cap after a restart', async () => {
    const asked: string[] = [];
    const decoder = new TelemetryDecoder({ ...LIMITS, maxMetricsPerDevice: 2 }, everyone, async (tenantId, deviceId) => {
      asked.push(`${tenantId}.${deviceId}`);
      return ['old1', 'old2'];
    });
    expect(reasonOf(await decoder.decode(message(['new']), { admit: true }))).toBe('too_many_metrics');
    expect(reasonOf(await decoder.decode(message(['old2', 'old1']), { admit: true }))).toBe('ok');
    expect(asked).toEqual(['t1.d1']);
  });

  test('a token bucket over the receive time: the burst passes, the excess is rate_limited, tokens come back at the rate', async () => {
    const decoder = new TelemetryDecoder({ ...LIMITS, deviceRate: 2, deviceBurst: 3 }, everyone);
    const at = (ms: number, device?: string) => decoder.decode(message(['x'], new Date(T0.getTime() + ms), device), { admit: true }).then(reasonOf);
    expect([await at(0), await at(0), await at(0), await at(0)]).toEqual(['ok', 'ok', 'ok', 'rate_limited']);
    expect(await at(0, 'd2')).toBe('ok');
    // Half a second at 2/s: one token.
    expect([await at(500), await at(500)]).toEqual(['ok', 'rate_limited']);
    // A long pause refills to the burst, not beyond.
    expect([await at(60_000), await at(60_000), await at(60_000), await at(60_000)]).toEqual(['ok', 'ok', 'ok', 'rate_limited']);
    // Decoding without admission (the live view, rules) is never charged.
    expect(reasonOf(await decoder.decode(message(['x'], new Date(T0.getTime() + 60_000))))).toBe('ok');
  });
});

describe('through the writer', () => {
  let world: MonitoringWorld;

  beforeAll(async () => {
    world = await startWorld({ MONITORING_MAX_METRICS_PER_DEVICE: '3', MONITORING_DEVICE_RATE: '1', MONITORING_DEVICE_BURST: '8' });
  });
  afterAll(async () => {
    await world?.close();
  });

  async function collectDeadLetters(tenantId: string): Promise<{ dead: Msg[]; stop: () => void }> {
    const dead: Msg[] = [];
    const sub = world.nc.subscribe(deadLettersOf(tenantId), { callback: (_err, msg) => dead.push(msg) });
    await world.nc.flush();
    return { dead, stop: () => sub.unsubscribe() };
  }

  async function deadLetterCount(reason: string): Promise<number> {
    return Number(new RegExp(`^iot_dead_letters_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(await metrics.text())?.[1] ?? 0);
  }

  test('a device beyond its metric-name cap: the message introducing a new name is dead-lettered as too_many_metrics, known names are stored', async () => {
    const t = newTenant();
    await world.registerDevice(t, 'many');
    const { dead, stop } = await collectDeadLetters(t);
    await world.publish(t, 'many', jsonPayload({ messageId: 'm1', points: [{ metric: 'a', numberValue: 1 }, { metric: 'b', numberValue: 2 }, { metric: 'c', numberValue: 3 }] }));
    await eventually(async () => (await world.rowCount(t)) === 3, 'three rows');
    await world.publish(t, 'many', jsonPayload({ messageId: 'm2', points: [{ metric: 'a', numberValue: 4 }, { metric: 'z', numberValue: 5 }] }));
    await world.publish(t, 'many', jsonPayload({ messageId: 'm3', points: [{ metric: 'b', numberValue: 6 }] }));
    await eventually(() => dead.length === 1, 'one dead letter');
    await eventually(async () => (await world.rowCount(t)) === 4, 'the known name stored');
    stop();
    expect(dead[0].headers?.get(DEAD_LETTER_HEADERS.reason)).toBe('too_many_metrics');
    expect(dead[0].headers?.get(DEAD_LETTER_HEADERS.detail)).toContain('z');
  });

  test('a device publishing above its rate: the excess is acknowledged, dead-lettered as rate_limited and counted', async () => {
    const t = newTenant();
    await world.registerDevice(t, 'chatty');
    const { dead, stop } = await collectDeadLetters(t);
    const counted = await deadLetterCount('rate_limited');
    const sent = 30;
    const started = Date.now();
    for (let i = 0; i < sent; i++) await world.publish(t, 'chatty', jsonPayload({ messageId: `r${i}`, points: [{ metric: 'x', numberValue: i }] }));
    const elapsedSeconds = (Date.now() - started) / 1000;
    await eventually(async () => dead.length + (await world.rowCount(t)) === sent, 'every message stored or dead-lettered');
    stop();
    // The burst of 8 and at most one token per second passed.
    expect(await world.rowCount(t)).toBeGreaterThanOrEqual(8);
    expect(await world.rowCount(t)).toBeLessThanOrEqual(8 + Math.ceil(elapsedSeconds));
    expect(dead.every((m) => m.headers?.get(DEAD_LETTER_HEADERS.reason) === 'rate_limited')).toBe(true);
    expect((await deadLetterCount('rate_limited')) - counted).toBe(dead.length);
  });
});
