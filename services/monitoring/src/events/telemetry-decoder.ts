import crypto from 'node:crypto';
import { Telemetry } from '../../../../gen/ts/iot/telemetry/v1/telemetry';
import { METRIC_NAME, parseDeviceSubject, payloadEncoding } from '@iot-mesh/runtime';
import { KnownDevice, TelemetryMessage } from '../domain/telemetry';
import type { PointRow } from '../store/telemetry-store';

/** Why a telemetry message was dead-lettered. */
export type DeadLetterReason =
  | 'bad_subject'
  | 'oversize'
  | 'unknown_device'
  | 'revoked_device'
  | 'unknown_metric'
  | 'malformed'
  | 'device_mismatch'
  | 'too_many_points'
  | 'not_finite'
  | 'too_far_future'
  | 'too_far_past'
  | 'invalid_text'
  | 'id_too_long'
  | 'store_rejected'
  | 'max_deliver'
  | 'too_many_metrics'
  | 'rate_limited';

/** Every reason, for counters that start at zero. */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = [
  'bad_subject',
  'oversize',
  'unknown_device',
  'revoked_device',
  'unknown_metric',
  'malformed',
  'device_mismatch',
  'too_many_points',
  'not_finite',
  'too_far_future',
  'too_far_past',
  'invalid_text',
  'id_too_long',
  'store_rejected',
  'max_deliver',
  'too_many_metrics',
  'rate_limited',
];

/** Longest message id accepted, in characters (documented in iot.telemetry.v1 and the README): it is part of the primary key. */
export const MAX_MESSAGE_ID_LENGTH = 128;

/**
 * Control characters (C0, DEL, C1): never in an id. Nor a lone surrogate (JSON's `"\ud800"`):
 * it has no UTF-8 form, so it would be stored as U+FFFD, not as sent (with `u`, the range matches only unpaired halves).
 */
const ID_CONTROL = /[\u0000-\u001f\u007f-\u009f\ud800-\udfff]/u;
/** Control characters a string value may not hold: U+0000 (PostgreSQL cannot store it) and the rest but tab, LF, CR; and lone surrogates (see ID_CONTROL). */
const VALUE_CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ud800-\udfff]/u;

/** The position of the first control character in `value` (`allowLayout`: tab, LF and CR allowed), or -1. */
function controlCharacterAt(value: string, allowLayout: boolean): number {
  return value.search(allowLayout ? VALUE_CONTROL : ID_CONTROL);
}

/** Limits a payload must respect. */
export interface IngestLimits {
  maxPayloadBytes: number;
  maxPoints: number;
  /** How far ahead of the receive time a sample may be. */
  maxFutureMs: number;
  /** How far behind the receive time a sample may be. */
  maxPastMs: number;
  /** Distinct metric names one device may have; a message adding one more is dead-lettered (`too_many_metrics`). Unset: no cap. */
  maxMetricsPerDevice?: number;
  /** Messages per second one device may publish on average (token bucket on the receive time); the excess is dead-lettered (`rate_limited`). Unset: no limit. */
  deviceRate?: number;
  /** Messages one device may publish at once above its rate (the bucket's size). */
  deviceBurst?: number;
}

/** The metric names a device already has stored (its `latest_points`), so the cap survives a restart. */
export type StoredMetricNames = (tenantId: string, deviceId: string, limit: number) => Promise<string[]>;

/** How a caller takes a decoded message. */
export interface DecodeOptions {
  /**
   * Admission for storage (the durable writer): the message takes a token of its
   * device's rate and, when accepted, its new metric names count against the cap.
   * Without it (live view, rules) the cap is only read and the rate is not charged,
   * so one message is charged once however many readers decode it.
   */
  admit?: boolean;
}

/** A device's admission state in this process. */
interface DeviceBudget {
  /** Its metric names: loaded from the store once, then learned from admitted messages. */
  metrics: Promise<Set<string>>;
  tokens: number;
  /** Receive time (ms) the tokens were counted at. */
  at: number;
}

/** Looks devices up in the directory (memory first). */
export interface DeviceLookup {
  /** The device, or undefined when it is not registered. */
  lookup(tenantId: string, deviceId: string): Promise<KnownDevice | undefined>;
}

/** One received message, from JetStream or core NATS. */
export interface ReceivedTelemetry {
  subject: string;
  data: Uint8Array;
  /** When the platform received it; the time of points without their own. Must be stable across redeliveries. */
  receivedAt: Date;
}

/** A message that passed validation. */
export interface AcceptedTelemetry extends TelemetryMessage {
  ok: true;
}

/** A message that did not. */
export interface RejectedTelemetry {
  ok: false;
  tenantId?: string;
  deviceId?: string;
  reason: DeadLetterReason;
  detail: string;
}

/** What decoding one message gives: its rows, or why it is dead-lettered. */
export type DecodedTelemetry = AcceptedTelemetry | RejectedTelemetry;

const SPECIAL_DOUBLES = new Set(['NaN', 'Infinity', '-Infinity']);

/**
 * Checks the shape of canonical proto3 JSON before ts-proto's lenient
 * `fromJSON` coerces it (it would turn `"abc"` into NaN and `{}` into "[object Object]").
 */
function checkJsonShape(json: unknown): string | undefined {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return 'payload is not a JSON object';
  const o = json as Record<string, unknown>;
  for (const key of ['deviceId', 'device_id', 'messageId', 'message_id']) {
    if (o[key] !== undefined && o[key] !== null && typeof o[key] !== 'string') return `${key} must be a string`;
  }
  if (o.points === undefined || o.points === null) return undefined;
  if (!Array.isArray(o.points)) return 'points must be an array';
  for (let i = 0; i < o.points.length; i++) {
    const p = o.points[i] as Record<string, unknown>;
    if (typeof p !== 'object' || p === null || Array.isArray(p)) return `points[${i}] is not an object`;
    if (p.metric !== undefined && typeof p.metric !== 'string') return `points[${i}].metric must be a string`;
    if (p.time !== undefined && p.time !== null && (typeof p.time !== 'string' || Number.isNaN(Date.parse(p.time)))) {
      return `points[${i}].time must be an RFC 3339 timestamp`;
    }
    const n = p.numberValue ?? p.number_value;
    if (n !== undefined && n !== null && typeof n !== 'number' && !(typeof n === 'string' && (SPECIAL_DOUBLES.has(n) || (n.trim() !== '' && !Number.isNaN(Number(n)))))) {
      return `points[${i}].numberValue must be a number`;
    }
    const b = p.boolValue ?? p.bool_value;
    if (b !== undefined && b !== null && typeof b !== 'boolean') return `points[${i}].boolValue must be true or false`;
    const s = p.stringValue ?? p.string_value;
    if (s !== undefined && s !== null && typeof s !== 'string') return `points[${i}].stringValue must be a string`;
  }
  return undefined;
}

/** Decodes binary Protobuf or canonical proto3 JSON (first non-space byte `{`). */
function parsePayload(data: Uint8Array): Telemetry | string {
  if (payloadEncoding(data) === 'json') {
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
    } catch (err) {
      return `invalid JSON: ${(err as Error).message}`;
    }
    const problem = checkJsonShape(json);
    if (problem) return problem;
    return Telemetry.fromJSON(json);
  }
  try {
    return Telemetry.decode(data);
  } catch (err) {
    return `invalid protobuf: ${(err as Error).message}`;
  }
}

/** A stable stand-in message id for payloads without one: the same bytes give the same id. */
function payloadId(data: Uint8Array): string {
  return `sha256:${crypto.createHash('sha256').update(data).digest('base64url').slice(0, 32)}`;
}

/**
 * The one telemetry decoder of a process: the writer, the live hub and the
 * alert evaluator all take what it decoded, so each delivered message is
 * parsed and validated once.
 */
export class TelemetryDecoder {
  private readonly budgets = new Map<string, DeviceBudget>();

  constructor(
    private readonly limits: IngestLimits,
    private readonly devices: DeviceLookup,
    private readonly storedMetrics: StoredMetricNames = async () => [],
  ) {}

  /**
   * Validates one telemetry message against the subject it arrived on, the
   * device directory and the limits, and turns it into rows. Never throws for
   * bad input: it says why instead (it throws only when the directory or the
   * stored metric names cannot be read).
   */
  async decode(message: ReceivedTelemetry, options: DecodeOptions = {}): Promise<DecodedTelemetry> {
    const decoded = await decodeTelemetry(message, this.limits, this.devices, options.admit ? (t, d) => this.takeToken(t, d, message.receivedAt) : undefined);
    if (!decoded.ok || this.limits.maxMetricsPerDevice === undefined) return decoded;
    return this.checkMetricCap(decoded, this.limits.maxMetricsPerDevice, message.receivedAt, options.admit === true);
  }

  private budget(tenantId: string, deviceId: string, receivedAt: number): DeviceBudget {
    const key = `${tenantId}.${deviceId}`;
    let budget = this.budgets.get(key);
    if (!budget) {
      const cap = this.limits.maxMetricsPerDevice ?? 0;
      const metrics = cap > 0 ? this.storedMetrics(tenantId, deviceId, cap + 1).then((names) => new Set(names)) : Promise.resolve(new Set<string>());
      // A failed load is tried again with the next message, not remembered.
      metrics.catch(() => this.budgets.delete(key));
      budget = { metrics, tokens: this.limits.deviceBurst ?? 1, at: receivedAt };
      this.budgets.set(key, budget);
    }
    return budget;
  }

  /** Token bucket over the receive time (the stream's timestamp), so the verdict does not depend on how fast the writer runs. */
  private takeToken(tenantId: string, deviceId: string, receivedAt: Date): string | undefined {
    const rate = this.limits.deviceRate;
    if (rate === undefined) return undefined;
    const burst = this.limits.deviceBurst ?? 1;
    const now = receivedAt.getTime();
    const budget = this.budget(tenantId, deviceId, now);
    if (now > budget.at) {
      budget.tokens = Math.min(burst, budget.tokens + ((now - budget.at) / 1000) * rate);
      budget.at = now;
    }
    if (budget.tokens < 1) return `device ${deviceId} publishes above its rate of ${rate}/s (burst ${burst})`;
    budget.tokens -= 1;
    return undefined;
  }

  private async checkMetricCap(decoded: AcceptedTelemetry, cap: number, receivedAt: Date, admit: boolean): Promise<DecodedTelemetry> {
    const { tenantId, deviceId } = decoded;
    const known = await this.budget(tenantId, deviceId, receivedAt.getTime()).metrics;
    const added = new Set(decoded.rows.map((r) => r.metric).filter((m) => !known.has(m)));
    if (added.size === 0) return decoded;
    if (known.size + added.size > cap) {
      return { ok: false, tenantId, deviceId, reason: 'too_many_metrics', detail: `device ${deviceId} has ${known.size} metric names and this message adds ${added.size} (${[...added].slice(0, 5).join(', ')}); the limit is ${cap}` };
    }
    if (admit) for (const m of added) known.add(m);
    return decoded;
  }
}

async function decodeTelemetry(
  message: ReceivedTelemetry,
  limits: IngestLimits,
  devices: DeviceLookup,
  takeToken?: (tenantId: string, deviceId: string) => string | undefined,
): Promise<DecodedTelemetry> {
  const subject = parseDeviceSubject(message.subject);
  if (!subject || subject.channel !== 'tel') return { ok: false, reason: 'bad_subject', detail: `not a telemetry subject: ${message.subject}` };
  const { tenantId, deviceId } = subject;
  const reject = (reason: DeadLetterReason, detail: string): RejectedTelemetry => ({ ok: false, tenantId, deviceId, reason, detail });

  if (message.data.byteLength > limits.maxPayloadBytes) {
    return reject('oversize', `payload is ${message.data.byteLength} bytes, the limit is ${limits.maxPayloadBytes}`);
  }
  const device = await devices.lookup(tenantId, deviceId);
  if (!device) return reject('unknown_device', `device ${deviceId} is not registered in tenant ${tenantId}`);
  if (device.revoked) return reject('revoked_device', `device ${deviceId} has its credentials revoked`);
  const overRate = takeToken?.(tenantId, deviceId);
  if (overRate) return reject('rate_limited', overRate);

  const payload = parsePayload(message.data);
  if (typeof payload === 'string') return reject('malformed', payload);
  if (payload.deviceId && payload.deviceId !== deviceId) {
    return reject('device_mismatch', `payload names device ${JSON.stringify(payload.deviceId)} but arrived on the subject of ${deviceId}`);
  }
  if (payload.points.length === 0) return reject('malformed', 'no points');
  if (payload.points.length > limits.maxPoints) return reject('too_many_points', `${payload.points.length} points, the limit is ${limits.maxPoints}`);

  if (payload.messageId.length > MAX_MESSAGE_ID_LENGTH) return reject('id_too_long', `messageId has ${payload.messageId.length} characters, the limit is ${MAX_MESSAGE_ID_LENGTH}`);
  const idControl = controlCharacterAt(payload.messageId, false);
  if (idControl >= 0) return reject('invalid_text', `messageId has a control character or lone surrogate (U+${payload.messageId.charCodeAt(idControl).toString(16).padStart(4, '0')}) at ${idControl}`);

  const received = message.receivedAt.getTime();
  const messageId = payload.messageId || payloadId(message.data);
  const rows: PointRow[] = [];
  for (let i = 0; i < payload.points.length; i++) {
    const p = payload.points[i];
    if (!METRIC_NAME.test(p.metric)) return reject('malformed', `points[${i}].metric ${JSON.stringify(p.metric.slice(0, 140))} is not a valid metric name`);
    if (device.declaredMetrics && !device.declaredMetrics.has(p.metric)) {
      return reject('unknown_metric', `points[${i}].metric ${JSON.stringify(p.metric)} is not declared by device type ${JSON.stringify(device.type ?? '')}, whose policy dead-letters undeclared metrics`);
    }
    const set = (p.numberValue !== undefined ? 1 : 0) + (p.boolValue !== undefined ? 1 : 0) + (p.stringValue !== undefined ? 1 : 0);
    if (set !== 1) return reject('malformed', `points[${i}] must have exactly one value, has ${set}`);
    if (p.numberValue !== undefined && !Number.isFinite(p.numberValue)) return reject('not_finite', `points[${i}].numberValue is ${p.numberValue}`);
    if (p.stringValue !== undefined) {
      const at = controlCharacterAt(p.stringValue, true);
      if (at >= 0) return reject('invalid_text', `points[${i}].stringValue has a control character or lone surrogate (U+${p.stringValue.charCodeAt(at).toString(16).padStart(4, '0')}) at ${at}`);
    }
    const time = p.time ?? message.receivedAt;
    const t = time.getTime();
    if (Number.isNaN(t)) return reject('malformed', `points[${i}].time is not a valid time`);
    if (t > received + limits.maxFutureMs) return reject('too_far_future', `points[${i}].time ${time.toISOString()} is more than ${limits.maxFutureMs} ms ahead`);
    if (t < received - limits.maxPastMs) return reject('too_far_past', `points[${i}].time ${time.toISOString()} is more than ${limits.maxPastMs} ms behind`);
    rows.push({
      tenantId,
      deviceId,
      metric: p.metric,
      time,
      messageId,
      pointIndex: i,
      value: p.numberValue !== undefined ? { number: p.numberValue } : p.boolValue !== undefined ? { bool: p.boolValue } : { string: p.stringValue },
      ...(p.time ? {} : { untimed: true }),
    });
  }
  return { ok: true, tenantId, deviceId, messageId, rows };
}
