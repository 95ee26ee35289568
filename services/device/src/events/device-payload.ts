/**
 * The device protocol's two encodings of one schema (`iot.telemetry.v1`):
 * devices send canonical proto3 JSON (MQTT devices do) or binary Protobuf;
 * what the platform sends to devices (`cmd`, `desired`) is JSON, which every
 * device understands.
 */

import { payloadEncoding } from '@iot-mesh/runtime';

/** A ts-proto message type, as far as the device protocol uses it. */
export interface DeviceMessageType<T> {
  fromJSON(o: unknown): T;
  toJSON(m: T): unknown;
  decode(b: Uint8Array): T;
}

/** Decodes a device payload that is either canonical proto3 JSON or binary Protobuf. */
export function decodeDevicePayload<T>(data: Uint8Array, type: Pick<DeviceMessageType<T>, 'fromJSON' | 'decode'>): T {
  if (payloadEncoding(data) === 'json') return type.fromJSON(JSON.parse(new TextDecoder().decode(data)));
  return type.decode(data);
}

/** A message to a device, as canonical proto3 JSON. */
export function encodeForDevice<T>(message: T, type: Pick<DeviceMessageType<T>, 'toJSON'>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(type.toJSON(message)));
}
