import { Telemetry } from '../../../gen/ts/iot/telemetry/v1/telemetry';
import { payloadEncoding } from '../src';

describe('payloadEncoding: canonical JSON or binary Protobuf', () => {
  const message = Telemetry.fromPartial({ deviceId: 'd1', messageId: 'm1', points: [{ metric: 'temperature', numberValue: 21.5 }] });

  test('canonical JSON is an object, after any whitespace', () => {
    expect(payloadEncoding(Buffer.from(JSON.stringify(Telemetry.toJSON(message))))).toBe('json');
    expect(payloadEncoding(Buffer.from(' \t\r\n{"deviceId":"d1"}'))).toBe('json');
  });

  test('anything else is binary, the empty payload included', () => {
    expect(payloadEncoding(Telemetry.encode(message).finish())).toBe('protobuf');
    expect(payloadEncoding(new Uint8Array())).toBe('protobuf');
    expect(payloadEncoding(Buffer.from('  '))).toBe('protobuf');
    // A JSON array or string is not a message: it goes to the binary decoder, which rejects it.
    expect(payloadEncoding(Buffer.from('[1]'))).toBe('protobuf');
  });
});
