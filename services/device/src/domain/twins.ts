import { NatsConnection, ErrorCode, NatsError } from 'nats';
import { setTimeout as sleep } from 'node:timers/promises';
import { deviceSubject, errors, Logger, ParsedDeviceSubject } from '@iot-mesh/runtime';
import { DesiredState, StateReport } from '../../../gen/ts/iot/telemetry/v1/telemetry';
import { DeviceStore } from './store/device-store';
import { JsonObject, TwinRecord } from './model';

/** Largest desired or reported document, as UTF-8 JSON. */
export const TWIN_DOCUMENT_LIMIT = 32 * 1024;

/** How long delivery on reconnect waits for the device to subscribe to its desired-state subject. */
const DELIVERY_WAIT_MS = 15_000;

/** Bytes of a document as JSON. */
export function documentSize(doc: JsonObject): number {
  return Buffer.byteLength(JSON.stringify(doc), 'utf8');
}

/** Decodes a device payload that is either canonical proto3 JSON or binary Protobuf. */
export function decodeDevicePayload<T>(data: Uint8Array, type: { fromJSON(o: unknown): T; decode(b: Uint8Array): T }): T {
  let i = 0;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09)) i++;
  if (data[i] === 0x7b /* { */) return type.fromJSON(JSON.parse(new TextDecoder().decode(data)));
  return type.decode(data);
}

/**
 * The device twin: desired state set by operators and delivered to the device
 * (on change, and again when it reconnects), reported state sent by the device
 * on its own subject. Both are versioned and at most 32 KB.
 */
export class TwinService {
  private readonly deliveries = new Map<string, AbortController>();

  constructor(
    private readonly store: DeviceStore,
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {}

  async get(tenantId: string, deviceId: string): Promise<TwinRecord> {
    const twin = await this.store.getTwin(tenantId, deviceId);
    if (!twin) throw errors.notFound('device', deviceId);
    return twin;
  }

  /** Replaces the desired document and sends it to the device if it listens. */
  async updateDesired(tenantId: string, deviceId: string, desired: JsonObject | undefined, expectedVersion: number): Promise<TwinRecord> {
    const doc = desired ?? {};
    const size = documentSize(doc);
    if (size > TWIN_DOCUMENT_LIMIT) {
      throw errors.invalidArgument([{ field: 'desired', description: `is ${size} bytes as JSON; the limit is ${TWIN_DOCUMENT_LIMIT} bytes (32 KB)` }]);
    }
    if (expectedVersion < 0) throw errors.invalidArgument([{ field: 'expected_version', description: 'must not be negative' }]);
    const twin = await this.store.setDesired(tenantId, deviceId, doc, expectedVersion);
    if (twin === 'conflict') throw errors.aborted(`the desired state of device ${JSON.stringify(deviceId)} changed since version ${expectedVersion}`);
    if (!twin) throw errors.notFound('device', deviceId);
    this.publishDesired(tenantId, deviceId, twin);
    return twin;
  }

  private encodeDesired(twin: TwinRecord): Uint8Array {
    const message: DesiredState = { desired: twin.desired, version: BigInt(twin.desiredVersion) };
    return new TextEncoder().encode(JSON.stringify(DesiredState.toJSON(message)));
  }

  private publishDesired(tenantId: string, deviceId: string, twin: TwinRecord): void {
    try {
      this.nc.publish(deviceSubject(tenantId, deviceId, 'desired'), this.encodeDesired(twin));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, deviceId }, 'publishing desired state failed; it is sent again on reconnect');
    }
  }

  /**
   * Sends the desired state to a device that just connected, once it has
   * subscribed: a request with no responders means nobody listens yet, so it
   * is retried; a request that times out was delivered to a listener.
   */
  async deliverOnConnect(tenantId: string, deviceId: string): Promise<void> {
    const key = `${tenantId}.${deviceId}`;
    this.deliveries.get(key)?.abort();
    const controller = new AbortController();
    this.deliveries.set(key, controller);
    try {
      const twin = await this.store.getTwin(tenantId, deviceId);
      if (!twin || twin.desiredVersion === 0) return;
      const subject = deviceSubject(tenantId, deviceId, 'desired');
      const until = Date.now() + DELIVERY_WAIT_MS;
      while (!controller.signal.aborted && Date.now() < until && !this.nc.isClosed()) {
        try {
          await this.nc.request(subject, this.encodeDesired(twin), { timeout: 250, noMux: true });
          return;
        } catch (err) {
          const code = (err as NatsError).code;
          if (code === ErrorCode.Timeout) return;
          if (code !== ErrorCode.NoResponders) throw err;
        }
        await sleep(200, undefined, { signal: controller.signal }).catch(() => undefined);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message, deviceId }, 'delivering desired state on connect failed');
    } finally {
      if (this.deliveries.get(key) === controller) this.deliveries.delete(key);
    }
  }

  /** Stores a device's `StateReport` (JSON or binary) from its `.state` subject; bad ones are logged and dropped. */
  async report(from: ParsedDeviceSubject, data: Uint8Array): Promise<void> {
    if (data.length > TWIN_DOCUMENT_LIMIT * 2) {
      this.log.warn({ deviceId: from.deviceId, bytes: data.length }, 'state report too large; dropped');
      return;
    }
    let reported: JsonObject;
    try {
      reported = decodeDevicePayload(data, StateReport).reported ?? {};
    } catch (err) {
      this.log.warn({ deviceId: from.deviceId, err: (err as Error).message }, 'undecodable state report; dropped');
      return;
    }
    if (documentSize(reported) > TWIN_DOCUMENT_LIMIT) {
      this.log.warn({ deviceId: from.deviceId }, 'reported state over 32 KB; dropped');
      return;
    }
    const twin = await this.store.setReported(from.tenantId, from.deviceId, reported);
    if (!twin) this.log.debug({ deviceId: from.deviceId }, 'state report of an unknown device');
  }

  stop(): void {
    for (const controller of this.deliveries.values()) controller.abort();
  }
}
