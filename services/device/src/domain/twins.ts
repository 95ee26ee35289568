import { errors } from '@iot-mesh/runtime';
import type { TwinStore } from '../store/twin-store';
import type { DeviceRegistry } from './devices';
import type { DeviceTypes } from './device-types';
import { JsonObject, TwinRecord } from './model';

/** Largest desired or reported document, as UTF-8 JSON. */
export const TWIN_DOCUMENT_LIMIT = 32 * 1024;

/** Bytes of a document as JSON. */
export function documentSize(doc: JsonObject): number {
  return Buffer.byteLength(JSON.stringify(doc), 'utf8');
}

/** Deepest nesting of objects and lists a document from a device may have. */
export const DOCUMENT_MAX_DEPTH = 32;

/** U+0000 (PostgreSQL's jsonb cannot hold it) or half a surrogate pair (no UTF-8 form). */
const UNSTORABLE = /[\u0000\ud800-\udfff]/u;

/**
 * Why a document a device sent (a command's result, reported state) cannot be
 * stored as sent, or undefined when it can: nested deeper than
 * {@link DOCUMENT_MAX_DEPTH}, or a key or string holding U+0000 or a lone
 * surrogate. Walked without recursion, so no depth overflows the stack.
 */
export function documentProblem(doc: JsonObject): string | undefined {
  const pending: { value: unknown; path: string; depth: number }[] = [{ value: doc, path: '', depth: 1 }];
  while (pending.length > 0) {
    const { value, path, depth } = pending.pop()!;
    if (typeof value === 'string') {
      if (UNSTORABLE.test(value)) return `${path || 'the document'} holds U+0000 or a lone surrogate`;
    } else if (value !== null && typeof value === 'object') {
      if (depth > DOCUMENT_MAX_DEPTH) return `is nested deeper than ${DOCUMENT_MAX_DEPTH} levels (at ${path})`;
      for (const [key, item] of Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value)) {
        if (UNSTORABLE.test(key)) return `a key of ${path || 'the document'} holds U+0000 or a lone surrogate`;
        pending.push({ value: item, path: path ? `${path}.${key}` : key, depth: depth + 1 });
      }
    }
  }
  return undefined;
}

/** How desired state reaches a device (`events/desired-state.ts`). */
export interface DesiredStateChannel {
  /** Sends the desired state now; a failure is only logged (it is sent again when the device reconnects). */
  send(tenantId: string, deviceId: string, twin: TwinRecord): void;
  /** Sends it once the device, which just connected, listens; a newer call for the same device replaces this one. */
  deliverWhenListening(tenantId: string, deviceId: string, twin: TwinRecord): Promise<void>;
}

/** What became of a state report. */
export type ReportOutcome = 'stored' | 'too_large' | 'unknown_device' | 'schema_violation' | 'unstorable';

/**
 * The device twin: desired state set by operators and delivered to the device
 * (on change, and again when it reconnects), reported state sent by the device
 * on its own subject. Both are versioned and at most 32 KB.
 */
export class Twins {
  constructor(
    private readonly store: TwinStore,
    private readonly devices: Pick<DeviceRegistry, 'get'>,
    private readonly desired: DesiredStateChannel,
    /** The device types' state schemas; absent, nothing is checked. */
    private readonly rules?: Pick<DeviceTypes, 'checkDesired' | 'reportedViolations'>,
  ) {}

  async get(tenantId: string, deviceId: string): Promise<TwinRecord> {
    await this.devices.get(tenantId, deviceId);
    const twin = await this.store.getTwin(tenantId, deviceId);
    if (!twin) throw errors.notFound('device', deviceId);
    return twin;
  }

  /** Replaces the desired document (optimistically, against `expectedVersion`; 0 means any) and sends it to the device. */
  async updateDesired(tenantId: string, deviceId: string, desired: JsonObject | undefined, expectedVersion: number): Promise<TwinRecord> {
    const doc = desired ?? {};
    const size = documentSize(doc);
    if (size > TWIN_DOCUMENT_LIMIT) {
      throw errors.invalidArgument([{ field: 'desired', description: `is ${size} bytes as JSON; the limit is ${TWIN_DOCUMENT_LIMIT} bytes (32 KB)` }]);
    }
    if (expectedVersion < 0) throw errors.invalidArgument([{ field: 'expected_version', description: 'must not be negative' }]);
    // Versions count updates: one past 2^53 was never handed out (and would round on its way to PostgreSQL).
    if (!Number.isSafeInteger(expectedVersion)) throw errors.invalidArgument([{ field: 'expected_version', description: `must be at most ${Number.MAX_SAFE_INTEGER}` }]);
    const device = await this.devices.get(tenantId, deviceId);
    await this.rules?.checkDesired(device, doc);
    const twin = await this.store.setDesired(tenantId, deviceId, doc, expectedVersion);
    if (twin === 'conflict') throw errors.aborted(`the desired state of device ${JSON.stringify(deviceId)} changed since version ${expectedVersion}`);
    if (!twin) throw errors.notFound('device', deviceId);
    this.desired.send(tenantId, deviceId, twin);
    return twin;
  }

  /** Devices connected: each gets its desired state again (it may have missed changes while away); one read for all of them. */
  async connected(devices: { tenantId: string; deviceId: string }[]): Promise<void> {
    const twins = await this.store.twinsWithDesired(devices);
    await Promise.all(twins.map(({ tenantId, twin }) => this.desired.deliverWhenListening(tenantId, twin.deviceId, twin)));
  }

  /** Stores the reported document a device sent. */
  async report(tenantId: string, deviceId: string, reported: JsonObject): Promise<ReportOutcome> {
    // Depth first: JSON.stringify (the size) overflows the stack on a deep enough document.
    if (documentProblem(reported)) return 'unstorable';
    if (documentSize(reported) > TWIN_DOCUMENT_LIMIT) return 'too_large';
    if (this.rules) {
      const device = await this.devices.get(tenantId, deviceId).catch(() => undefined);
      if (!device) return 'unknown_device';
      if ((await this.rules.reportedViolations(device, reported)).length > 0) return 'schema_violation';
    }
    return (await this.store.setReported(tenantId, deviceId, reported)) ? 'stored' : 'unknown_device';
  }
}
