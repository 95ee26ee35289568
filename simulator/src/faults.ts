import { Telemetry } from '../../gen/ts/iot/telemetry/v1/telemetry';
import { Encoding, encodeTelemetry } from './encoding';
import { Random } from './random';

/** The kinds of bad message a device can be told to send. */
export const FAULT_KINDS = ['malformed', 'oversized', 'wrong-subject', 'clock-skew'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** What share of messages carries each fault, and how large the faults are. */
export interface FaultPlan {
  /** Share (0–1) of messages per fault kind; the shares together at most 1. */
  shares: Partial<Record<FaultKind, number>>;
  /** Size an oversized message reaches at least (bytes); default 300 KiB, above the ingest default of 256 KiB. */
  oversizeBytes: number;
  /** How far clock-skewed points are moved, alternately into the future and the past (ms); default 2 days. */
  skewMs: number;
}

export const DEFAULT_FAULT_PLAN: FaultPlan = { shares: {}, oversizeBytes: 300 * 1024, skewMs: 2 * 86_400_000 };

/**
 * Parses `malformed=0.01,oversized=0.005,wrong-subject=0.01,clock-skew=0.01`
 * (also `oversize-bytes=…`, `skew=<seconds>`). Throws naming the bad part.
 */
export function parseFaultPlan(text: string | undefined): FaultPlan {
  const plan: FaultPlan = { ...DEFAULT_FAULT_PLAN, shares: {} };
  if (!text) return plan;
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [key, raw] = part.split('=');
    const value = Number(raw);
    if (raw === undefined || !Number.isFinite(value) || value < 0) throw new Error(`fault "${part}": expected <kind>=<non-negative number>`);
    if (key === 'oversize-bytes') plan.oversizeBytes = Math.floor(value);
    else if (key === 'skew') plan.skewMs = value * 1000;
    else if ((FAULT_KINDS as readonly string[]).includes(key)) {
      if (value > 1) throw new Error(`fault "${part}": a share is between 0 and 1`);
      plan.shares[key as FaultKind] = value;
    } else throw new Error(`fault "${part}": unknown kind (one of ${[...FAULT_KINDS, 'oversize-bytes', 'skew'].join(', ')})`);
  }
  const total = Object.values(plan.shares).reduce((a, b) => a + (b ?? 0), 0);
  if (total > 1 + 1e-9) throw new Error(`fault shares add up to ${total}, more than 1`);
  return plan;
}

/** True when the plan injects any fault. */
export function hasFaults(plan: FaultPlan): boolean {
  return Object.values(plan.shares).some((share) => (share ?? 0) > 0);
}

/** Draws the fault of the next message (undefined: a good message), by the plan's shares. */
export function pickFault(plan: FaultPlan, random: Random): FaultKind | undefined {
  let u = random.next();
  for (const kind of FAULT_KINDS) {
    const share = plan.shares[kind] ?? 0;
    if (u < share) return kind;
    u -= share;
  }
  return undefined;
}

/** A message ready to publish: where to, and the bytes. */
export interface OutgoingMessage {
  subject: string;
  payload: Buffer;
  /** Points carried (0 for a payload that cannot be decoded). */
  points: number;
  fault?: FaultKind;
}

/** What a fault needs to know about the sending device. */
export interface FaultContext {
  /** The device's own telemetry subject. */
  subject: string;
  /** A telemetry subject of some other device (of the same tenant). */
  foreignSubject: string;
  encoding: Encoding;
  random: Random;
  plan: FaultPlan;
  /** Counts skewed messages so future and past alternate. */
  skewCount: number;
}

/**
 * Bytes that neither decoder accepts. JSON: the text cut off mid-way, so it
 * does not parse. Protobuf: a valid prefix, then field 3 (points) announcing
 * more bytes than follow, which every decoder rejects as a premature end.
 */
export function malformPayload(good: Buffer, encoding: Encoding): Buffer {
  if (encoding === 'json') return good.subarray(0, Math.max(1, Math.floor(good.length / 2)));
  const prefix = good.subarray(0, Math.min(good.length, 8));
  // Tag 0x1a = field 3, length-delimited; length 0x7f = 127 bytes, then only 3 bytes.
  return Buffer.concat([prefix, Buffer.from([0x1a, 0x7f, 0x0a, 0x01, 0x78])]);
}

/** The message padded with extra points until its encoding is at least `minBytes`. */
export function oversize(message: Telemetry, encoding: Encoding, minBytes: number): Telemetry {
  const template = message.points.length > 0 ? message.points : [{ metric: 'padding', numberValue: 0, time: new Date() }];
  const points = [...message.points];
  let size = encodeTelemetry({ ...message, points }, encoding).length;
  while (size < minBytes) {
    // Grow by an estimate from the current bytes per point, then measure again.
    const perPoint = Math.max(8, size / Math.max(1, points.length));
    const more = Math.max(1, Math.ceil((minBytes - size) / perPoint));
    for (let i = 0; i < more; i++) points.push(template[points.length % template.length]);
    size = encodeTelemetry({ ...message, points }, encoding).length;
  }
  return { ...message, points };
}

/** The message with every point's time moved by ±skew (alternating future, past). */
export function skewClock(message: Telemetry, skewMs: number, future: boolean, now: Date): Telemetry {
  const shift = future ? skewMs : -skewMs;
  return {
    ...message,
    points: message.points.map((p) => ({ ...p, time: new Date((p.time ?? now).getTime() + shift) })),
  };
}

/**
 * Builds the outgoing message for a good telemetry message and the fault
 * drawn for it (if any): malformed bytes, an oversized payload, the right
 * payload on another device's subject, or points far off in time.
 */
export function buildMessage(message: Telemetry, fault: FaultKind | undefined, ctx: FaultContext, now = new Date()): OutgoingMessage {
  switch (fault) {
    case undefined:
      return { subject: ctx.subject, payload: encodeTelemetry(message, ctx.encoding), points: message.points.length };
    case 'malformed':
      return { subject: ctx.subject, payload: malformPayload(encodeTelemetry(message, ctx.encoding), ctx.encoding), points: 0, fault };
    case 'oversized': {
      const big = oversize(message, ctx.encoding, ctx.plan.oversizeBytes);
      return { subject: ctx.subject, payload: encodeTelemetry(big, ctx.encoding), points: big.points.length, fault };
    }
    case 'wrong-subject':
      return { subject: ctx.foreignSubject, payload: encodeTelemetry(message, ctx.encoding), points: message.points.length, fault };
    case 'clock-skew': {
      const skewed = skewClock(message, ctx.plan.skewMs, ctx.skewCount++ % 2 === 0, now);
      return { subject: ctx.subject, payload: encodeTelemetry(skewed, ctx.encoding), points: skewed.points.length, fault };
    }
  }
}
