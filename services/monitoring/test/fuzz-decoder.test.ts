/*
 * Property-based fuzzing of the telemetry decoder (issue 13), in process:
 * arbitrary bytes, arbitrary JSON, and structurally valid messages (binary
 * and canonical JSON) with hostile strings, ids, numbers and times on
 * arbitrary subjects. The decoder must answer accepted or a known
 * dead-letter reason, never throw, and never accept a row PostgreSQL could
 * not store as sent (NUL and other control characters, lone surrogates, ids
 * over 128 characters, non-finite numbers). The subject parser is fuzzed
 * here too, since every message passes through it first.
 * Replay a failure with the FUZZ_SEED/FUZZ_PATH line it prints.
 */
import fc from 'fast-check';
import { deviceSubject, METRIC_NAME, parseDeviceSubject, SUBJECT_TOKEN } from '@iot-mesh/runtime';
import { Telemetry } from '../../../gen/ts/iot/telemetry/v1/telemetry';
import { DEAD_LETTER_REASONS, DecodedTelemetry, DeviceLookup, IngestLimits, MAX_MESSAGE_ID_LENGTH, TelemetryDecoder } from '../src/events/telemetry-decoder';
import { KnownDevice } from '../src/domain/telemetry';
import { fuzz, hostileString, printFuzzCounts } from '../../../testing/fuzz';

jest.setTimeout(120_000);

const TENANT = 't-fuzz';
const DEVICE = 'dev-1';
const REVOKED = 'dev-revoked';
/** The receive time of every case: fixed, so time windows are reproducible from the seed. */
const RECEIVED_AT = new Date('2026-06-01T12:00:00.000Z');
/** The service's default limits (services/monitoring/src/config.ts), but a smaller payload cap so `oversize` is reachable. */
const LIMITS: IngestLimits = { maxPayloadBytes: 16 * 1024, maxPoints: 50, maxFutureMs: 5 * 60_000, maxPastMs: 7 * 86_400_000 };

/** The directory the decoder consults: one live device and one revoked, as the KV view would hold them. */
class FixedDirectory implements DeviceLookup {
  private readonly devices = new Map<string, KnownDevice>([
    [`${TENANT}.${DEVICE}`, { tenantId: TENANT, deviceId: DEVICE, labels: {}, revoked: false }],
    [`${TENANT}.${REVOKED}`, { tenantId: TENANT, deviceId: REVOKED, labels: {}, revoked: true }],
  ]);
  async lookup(tenantId: string, deviceId: string): Promise<KnownDevice | undefined> {
    return this.devices.get(`${tenantId}.${deviceId}`);
  }
}

const decoder = new TelemetryDecoder(LIMITS, new FixedDirectory());
const REASONS = new Set<string>(DEAD_LETTER_REASONS);
const SUBJECT = deviceSubject(TENANT, DEVICE, 'tel');

/** Control characters of an id (C0, DEL, C1). */
const ID_CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** Control characters of a string value (all but tab, LF, CR). */
const VALUE_CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;
/** A UTF-16 code unit of a surrogate half that has no partner: not encodable as UTF-8, so not storable as sent. */
const LONE_SURROGATE = /[\ud800-\udfff]/u;

/** The invariants every decoded message holds; throws (fails the case) when one does not. */
function checkDecoded(result: DecodedTelemetry): void {
  if (!result.ok) {
    expect(REASONS.has(result.reason)).toBe(true);
    expect(typeof result.detail).toBe('string');
    return;
  }
  expect(result.tenantId).toBe(TENANT);
  expect(result.deviceId).toBe(DEVICE);
  expect(result.rows.length).toBeGreaterThan(0);
  expect(result.rows.length).toBeLessThanOrEqual(LIMITS.maxPoints);
  expect(result.messageId.length).toBeLessThanOrEqual(MAX_MESSAGE_ID_LENGTH);
  expect(result.messageId.length).toBeGreaterThan(0);
  expect(ID_CONTROL.test(result.messageId)).toBe(false);
  expect(LONE_SURROGATE.test(result.messageId)).toBe(false);
  for (const row of result.rows) {
    expect(METRIC_NAME.test(row.metric)).toBe(true);
    expect(Number.isNaN(row.time.getTime())).toBe(false);
    expect(row.time.getTime()).toBeLessThanOrEqual(RECEIVED_AT.getTime() + LIMITS.maxFutureMs);
    expect(row.time.getTime()).toBeGreaterThanOrEqual(RECEIVED_AT.getTime() - LIMITS.maxPastMs);
    const values = [row.value.number, row.value.bool, row.value.string].filter((v) => v !== undefined);
    expect(values).toHaveLength(1);
    if (row.value.number !== undefined) expect(Number.isFinite(row.value.number)).toBe(true);
    if (row.value.string !== undefined) {
      expect(VALUE_CONTROL.test(row.value.string)).toBe(false);
      expect(LONE_SURROGATE.test(row.value.string)).toBe(false);
    }
  }
}

/** Decodes one message; a throw fails the case with the input that caused it. */
async function decodes(subject: string, data: Uint8Array): Promise<DecodedTelemetry> {
  const result = await decoder.decode({ subject, data, receivedAt: RECEIVED_AT });
  checkDecoded(result);
  return result;
}

/** Metric names: mostly valid (so the rest of a message is reached), some hostile. */
const metric = fc.oneof({ weight: 3, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/) }, { weight: 1, arbitrary: hostileString });

/** Doubles incl. NaN, ±Infinity, -0, subnormals and huge values. */
const hostileNumber = fc.oneof(fc.double(), fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, Number.MAX_VALUE, Number.MIN_VALUE, 2 ** 53 + 1));

/** Times around the receive window's edges, far outside it, and invalid. */
const hostileTime = fc.oneof(
  fc.integer({ min: -LIMITS.maxPastMs - 1000, max: LIMITS.maxFutureMs + 1000 }).map((d) => new Date(RECEIVED_AT.getTime() + d)),
  fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }),
);

/** One point: zero, one or several values set, so `exactly one value` is exercised. */
const point = fc.record(
  {
    metric,
    time: hostileTime,
    numberValue: hostileNumber,
    boolValue: fc.boolean(),
    stringValue: hostileString,
  },
  { requiredKeys: ['metric'] },
);

/** A structurally valid Telemetry message with hostile content. */
const telemetry = fc.record(
  {
    deviceId: fc.oneof(fc.constant(DEVICE), fc.constant(''), hostileString),
    messageId: fc.oneof(fc.string({ maxLength: 10 }), hostileString),
    points: fc.array(point, { maxLength: LIMITS.maxPoints + 3 }),
  },
  { requiredKeys: ['points'] },
);

/** A message that satisfies every rule: it must be accepted, row for row. */
const cleanTelemetry = fc.record({
  messageId: fc.string({ unit: fc.constantFrom(...Array.from('abcXYZ019-_:/é日😀')), maxLength: MAX_MESSAGE_ID_LENGTH / 2 }),
  points: fc.array(
    fc.record({
      metric: fc.stringMatching(/^[A-Za-z0-9_.-]{1,40}$/),
      time: fc.integer({ min: -LIMITS.maxPastMs, max: LIMITS.maxFutureMs }).map((d) => new Date(RECEIVED_AT.getTime() + d)),
      value: fc.oneof(
        fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => ({ numberValue: n })),
        fc.boolean().map((b) => ({ boolValue: b })),
        fc.string({ unit: 'grapheme', maxLength: 30 }).map((s) => ({ stringValue: s.replace(VALUE_CONTROL, ' ') })),
      ),
    }),
    { minLength: 1, maxLength: 10 },
  ),
});

const utf8 = (s: string) => new TextEncoder().encode(s);

afterAll(() => printFuzzCounts('services/monitoring/test/fuzz-decoder.test.ts'));

describe('telemetry decoder fuzzing', () => {
  it('arbitrary bytes never throw and only accept storable rows', async () => {
    await fuzz('decoder: arbitrary bytes', fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (data) => void (await decodes(SUBJECT, data))), 15_000);
  });

  it('arbitrary bytes after a `{` (the JSON path) never throw', async () => {
    await fuzz('decoder: JSON-looking bytes', fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (data) => void (await decodes(SUBJECT, new Uint8Array([0x7b, ...data])))), 8_000);
  });

  it('arbitrary JSON values never throw', async () => {
    const shaped = fc.record({ deviceId: fc.jsonValue(), messageId: fc.jsonValue(), points: fc.oneof(fc.jsonValue(), fc.array(fc.dictionary(fc.constantFrom('metric', 'time', 'numberValue', 'number_value', 'boolValue', 'stringValue', 'string_value'), fc.jsonValue()))) }, { requiredKeys: [] });
    await fuzz(
      'decoder: arbitrary JSON',
      fc.asyncProperty(fc.oneof(fc.jsonValue(), shaped), async (json) => void (await decodes(SUBJECT, utf8(JSON.stringify(json) ?? 'null')))),
      6_000,
    );
  });

  it('valid binary messages with hostile strings, ids, numbers and times', async () => {
    await fuzz(
      'decoder: hostile binary',
      fc.asyncProperty(telemetry, async (message) => void (await decodes(SUBJECT, Telemetry.encode(Telemetry.fromPartial(message)).finish()))),
      10_000,
    );
  });

  it('valid JSON messages with hostile strings, ids, numbers and times (lone surrogates survive JSON escapes)', async () => {
    await fuzz(
      'decoder: hostile JSON',
      fc.asyncProperty(telemetry, async (message) => void (await decodes(SUBJECT, utf8(JSON.stringify(Telemetry.toJSON(Telemetry.fromPartial(message))))))),
      10_000,
    );
  });

  it('arbitrary subjects: only a registered, unrevoked device on its tel subject is accepted', async () => {
    const subject = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.array(fc.oneof(fc.constantFrom('iot', TENANT, 'dev', DEVICE, REVOKED, 'tel', 'state', '*', '>', ''), fc.string({ maxLength: 8 })), { maxLength: 7 }).map((parts) => parts.join('.')),
    );
    const body = Telemetry.encode(Telemetry.fromPartial({ points: [{ metric: 'm', numberValue: 1 }] })).finish();
    await fuzz(
      'decoder: arbitrary subjects',
      fc.asyncProperty(subject, async (s) => {
        const result = await decoder.decode({ subject: s, data: body, receivedAt: RECEIVED_AT });
        if (!result.ok) expect(REASONS.has(result.reason)).toBe(true);
        expect(result.ok).toBe(s === SUBJECT);
      }),
      5_000,
    );
  });

  it('clean messages are accepted with every point, in binary and in JSON', async () => {
    await fuzz(
      'decoder: clean round trip',
      fc.asyncProperty(cleanTelemetry, fc.boolean(), async (clean, json) => {
        const message = Telemetry.fromPartial({ messageId: clean.messageId, points: clean.points.map((p) => ({ metric: p.metric, time: p.time, ...p.value })) });
        const data = json ? utf8(JSON.stringify(Telemetry.toJSON(message))) : Telemetry.encode(message).finish();
        const result = await decodes(SUBJECT, data);
        if (!result.ok) throw new Error(`clean message refused: ${result.reason}: ${result.detail}`);
        expect(result.rows.map((r) => r.metric)).toEqual(clean.points.map((p) => p.metric));
        if (clean.messageId) expect(result.messageId).toBe(clean.messageId);
      }),
      1_500,
    );
  });
});

describe('device subject parser fuzzing', () => {
  const token = fc.stringMatching(SUBJECT_TOKEN);
  const channel = fc.constantFrom('tel' as const, 'state' as const, 'cmd' as const, 'desired' as const);

  it('arbitrary topics: never a wildcard, empty or invalid token', async () => {
    const topic = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.tuple(fc.oneof(fc.constant('iot'), hostileString), fc.oneof(token, hostileString), fc.oneof(fc.constant('dev'), hostileString), fc.oneof(token, hostileString), fc.oneof(channel, hostileString)).map((t) => t.join('.')),
      fc.tuple(token, token, channel, fc.constantFrom('*', '>', '', ' ', '.', '\u0000')).map(([t, d, c, bad]) => [`iot.${bad}.dev.${d}.${c}`, `iot.${t}.dev.${bad}.${c}`, `iot.${t}.dev.${d}.${bad}`][bad.length % 3]),
    );
    await fuzz(
      'subjects: arbitrary topics',
      fc.property(topic, (s) => {
        const parsed = parseDeviceSubject(s);
        if (!parsed) return;
        for (const part of [parsed.tenantId, parsed.deviceId]) {
          expect(SUBJECT_TOKEN.test(part)).toBe(true);
          expect(part).not.toMatch(/[*>.\s]/);
        }
        expect(deviceSubject(parsed.tenantId, parsed.deviceId, parsed.channel)).toBe(s);
      }),
      60_000,
    );
  });

  it('valid subjects round-trip', async () => {
    await fuzz(
      'subjects: round trip',
      fc.property(token, token, channel, (tenantId, deviceId, ch) => {
        expect(parseDeviceSubject(deviceSubject(tenantId, deviceId, ch))).toEqual({ tenantId, deviceId, channel: ch });
      }),
      10_000,
    );
  });
});
