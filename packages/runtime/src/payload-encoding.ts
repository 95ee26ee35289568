/**
 * The device payload's two encodings of one schema (`iot.telemetry.v1`):
 * canonical proto3 JSON (MQTT devices send it) or binary Protobuf. One check
 * tells them apart, for the device service, monitoring and the simulator.
 */

/** The two encodings, in the order tools list them. */
export const PAYLOAD_ENCODINGS = ['json', 'protobuf'] as const;

/** `json` (canonical proto3 JSON) or `protobuf` (binary). */
export type PayloadEncoding = (typeof PAYLOAD_ENCODINGS)[number];

/**
 * Which encoding a device payload uses: JSON when its first byte after
 * whitespace is `{` (canonical JSON of a message is an object), else binary —
 * no message of the device protocol starts with 0x7b in binary (that would be
 * field 15, wire type 3, which none has). An empty payload is the empty binary message.
 */
export function payloadEncoding(data: Uint8Array): PayloadEncoding {
  for (const byte of data) {
    if (byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d) continue;
    return byte === 0x7b ? 'json' : 'protobuf';
  }
  return 'protobuf';
}
