import { Telemetry } from '../../gen/ts/iot/telemetry/v1/telemetry';
import { decodeTelemetry, encodeTelemetry } from '../src/encoding';
import { buildMessage, FaultContext, parseFaultPlan, pickFault } from '../src/faults';
import { parseBurst, parseStorm, pickShare } from '../src/fleet';
import { Random } from '../src/random';

const now = new Date('2026-11-27T12:00:00Z');
const message: Telemetry = {
  deviceId: 'ws-1',
  messageId: 'ws-1-r-1',
  points: [
    { metric: 'temperature', time: now, numberValue: 20.5 },
    { metric: 'humidity', time: now, numberValue: 55 },
  ],
};

function context(encoding: 'json' | 'protobuf', spec = ''): FaultContext {
  return {
    subject: 'iot.t1.dev.ws-1.tel',
    foreignSubject: 'iot.t1.dev.ws-2.tel',
    encoding,
    random: new Random(1),
    plan: parseFaultPlan(spec),
    skewCount: 0,
  };
}

describe('fault plan', () => {
  it('parses shares and sizes', () => {
    const plan = parseFaultPlan('malformed=0.1, oversized=0.05,wrong-subject=0.02,clock-skew=0.03,oversize-bytes=1000,skew=60');
    expect(plan.shares).toEqual({ malformed: 0.1, oversized: 0.05, 'wrong-subject': 0.02, 'clock-skew': 0.03 });
    expect(plan.oversizeBytes).toBe(1000);
    expect(plan.skewMs).toBe(60_000);
  });

  it('rejects unknown kinds, bad numbers and shares over 1', () => {
    expect(() => parseFaultPlan('broken=0.1')).toThrow(/unknown kind/);
    expect(() => parseFaultPlan('malformed=x')).toThrow(/malformed=x/);
    expect(() => parseFaultPlan('malformed=1.5')).toThrow(/between 0 and 1/);
    expect(() => parseFaultPlan('malformed=0.6,oversized=0.6')).toThrow(/more than 1/);
  });

  it('draws each fault at about its share', () => {
    const plan = parseFaultPlan('malformed=0.1,clock-skew=0.2');
    const random = new Random(3);
    const counts: Record<string, number> = {};
    const n = 50_000;
    for (let i = 0; i < n; i++) {
      const kind = pickFault(plan, random) ?? 'none';
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    expect(counts.malformed / n).toBeCloseTo(0.1, 1);
    expect(counts['clock-skew'] / n).toBeCloseTo(0.2, 1);
    expect(counts.none / n).toBeCloseTo(0.7, 1);
    expect(counts.oversized).toBeUndefined();
  });
});

describe('faulty messages', () => {
  for (const encoding of ['json', 'protobuf'] as const) {
    describe(encoding, () => {
      it('sends a good message unchanged on its own subject', () => {
        const out = buildMessage(message, undefined, context(encoding), now);
        expect(out.subject).toBe('iot.t1.dev.ws-1.tel');
        expect(decodeTelemetry(out.payload, encoding)).toEqual(message);
        expect(out.points).toBe(2);
      });

      it('malformed: bytes the decoder rejects', () => {
        const out = buildMessage(message, 'malformed', context(encoding), now);
        expect(out.fault).toBe('malformed');
        expect(() => decodeTelemetry(out.payload, encoding)).toThrow();
        expect(out.points).toBe(0);
      });

      it('oversized: a valid message above the configured size', () => {
        const out = buildMessage(message, 'oversized', context(encoding, 'oversize-bytes=20000'), now);
        expect(out.payload.length).toBeGreaterThanOrEqual(20_000);
        expect(out.payload.length).toBeLessThan(40_000);
        const decoded = decodeTelemetry(out.payload, encoding);
        expect(decoded.points.length).toBe(out.points);
        expect(decoded.messageId).toBe(message.messageId);
      });

      it('oversized by default exceeds the 256 KB ingest limit', () => {
        const out = buildMessage(message, 'oversized', context(encoding), now);
        expect(out.payload.length).toBeGreaterThan(256 * 1024);
      });

      it('wrong-subject: the device’s own payload on another device’s subject', () => {
        const out = buildMessage(message, 'wrong-subject', context(encoding), now);
        expect(out.subject).toBe('iot.t1.dev.ws-2.tel');
        expect(decodeTelemetry(out.payload, encoding).deviceId).toBe('ws-1');
      });

      it('clock-skew: every point moved by the skew, alternately into the future and the past', () => {
        const ctx = context(encoding, 'skew=3600');
        const first = decodeTelemetry(buildMessage(message, 'clock-skew', ctx, now).payload, encoding);
        const second = decodeTelemetry(buildMessage(message, 'clock-skew', ctx, now).payload, encoding);
        for (const p of first.points) expect(p.time!.getTime()).toBe(now.getTime() + 3_600_000);
        for (const p of second.points) expect(p.time!.getTime()).toBe(now.getTime() - 3_600_000);
        expect(first.points.map((p) => p.numberValue)).toEqual([20.5, 55]);
      });
    });
  }

  it('leaves the original message untouched', () => {
    const before = encodeTelemetry(message, 'json');
    buildMessage(message, 'clock-skew', context('json'), now);
    buildMessage(message, 'oversized', context('json'), now);
    expect(encodeTelemetry(message, 'json')).toEqual(before);
  });
});

describe('disruptions', () => {
  it('parses storms and bursts', () => {
    expect(parseStorm('every=30,share=0.5')).toEqual({ everyS: 30, share: 0.5 });
    expect(parseBurst('every=10,messages=50')).toEqual({ everyS: 10, messages: 50, share: 1 });
    expect(() => parseStorm('share=0.5')).toThrow(/every/);
    expect(() => parseBurst('every=1,size=3')).toThrow(/burst "size=3"/);
  });

  it('picks a share of distinct devices', () => {
    const items = Array.from({ length: 100 }, (_, i) => i);
    const picked = pickShare(items, 0.25, new Random(1));
    expect(picked).toHaveLength(25);
    expect(new Set(picked).size).toBe(25);
    expect(pickShare(items, 0, new Random(1))).toHaveLength(0);
    expect(pickShare(items, 1, new Random(1)).sort((a, b) => a - b)).toEqual(items);
  });
});
