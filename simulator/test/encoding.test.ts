import { payloadEncoding } from '@iot-mesh/runtime';
import { CommandReply, CommandRequest, DesiredState, StateReport, Telemetry } from '../../gen/ts/iot/telemetry/v1/telemetry';
import {
  decodeCommandRequest,
  decodeDesiredState,
  decodeTelemetry,
  encodeCommandReply,
  encodeStateReport,
  encodeTelemetry,
  isTraceparent,
  MessageIds,
  newTraceparent,
} from '../src/encoding';
import { createSensor, PointSource } from '../src/profiles';

const message: Telemetry = {
  deviceId: 'ws-1',
  messageId: 'ws-1-abc-1',
  points: [
    { metric: 'temperature', time: new Date('2026-11-27T10:00:00.123Z'), numberValue: 21.5 },
    { metric: 'moving', time: new Date('2026-11-27T10:00:00.123Z'), boolValue: false },
    { metric: 'fix', time: new Date('2026-11-27T10:00:00.123Z'), stringValue: '3d' },
  ],
};

describe('telemetry encodings', () => {
  it('writes canonical proto3 JSON: camelCase names, RFC 3339 times, one value field per point', () => {
    const json = JSON.parse(encodeTelemetry(message, 'json').toString('utf8'));
    expect(json).toEqual({
      deviceId: 'ws-1',
      messageId: 'ws-1-abc-1',
      points: [
        { metric: 'temperature', time: '2026-11-27T10:00:00.123Z', numberValue: 21.5 },
        { metric: 'moving', time: '2026-11-27T10:00:00.123Z', boolValue: false },
        { metric: 'fix', time: '2026-11-27T10:00:00.123Z', stringValue: '3d' },
      ],
    });
  });

  it('round-trips both encodings to the same message', () => {
    for (const encoding of ['json', 'protobuf'] as const) {
      expect(decodeTelemetry(encodeTelemetry(message, encoding), encoding)).toEqual(message);
    }
  });

  it('writes binary Protobuf that the generated decoder reads field by field', () => {
    const bytes = encodeTelemetry(message, 'protobuf');
    const decoded = Telemetry.decode(bytes);
    expect(decoded.points.map((p) => p.metric)).toEqual(['temperature', 'moving', 'fix']);
    expect(decoded.points[0].time).toEqual(message.points[0].time);
    expect(bytes.length).toBeLessThan(encodeTelemetry(message, 'json').length);
  });

  it('encodes generated readings losslessly', () => {
    const points = new PointSource(createSensor('gps', 3)).next(21, new Date('2026-11-27T10:00:00Z'), 3000);
    const m: Telemetry = { deviceId: 'gps-1', messageId: 'x', points };
    expect(decodeTelemetry(encodeTelemetry(m, 'protobuf'))).toEqual(m);
    expect(decodeTelemetry(encodeTelemetry(m, 'json'))).toEqual(m);
  });

  it('tells JSON from Protobuf by the first byte', () => {
    expect(payloadEncoding(encodeTelemetry(message, 'json'))).toBe('json');
    expect(payloadEncoding(Buffer.from(' \n{}'))).toBe('json');
    expect(payloadEncoding(encodeTelemetry(message, 'protobuf'))).toBe('protobuf');
    expect(payloadEncoding(CommandRequest.encode({ commandId: 'c', name: 'ping' }).finish())).toBe('protobuf');
  });
});

describe('device-side messages', () => {
  it('reads command requests and desired state in either encoding', () => {
    const request: CommandRequest = { commandId: 'c1', name: 'set_interval', payload: { interval_ms: 250 }, deadline: new Date('2026-11-27T10:00:05Z') };
    expect(decodeCommandRequest(Buffer.from(JSON.stringify(CommandRequest.toJSON(request))))).toEqual(request);
    expect(decodeCommandRequest(CommandRequest.encode(request).finish())).toEqual(request);
    const desired: DesiredState = { desired: { interval_ms: 500 }, version: 7n };
    expect(decodeDesiredState(Buffer.from(JSON.stringify(DesiredState.toJSON(desired))))).toEqual(desired);
    expect(decodeDesiredState(DesiredState.encode(desired).finish())).toEqual(desired);
  });

  it('writes replies and state reports the generated decoders accept', () => {
    const reply: CommandReply = { commandId: 'c1', ok: true, result: { pong: true }, error: '' };
    expect(CommandReply.decode(encodeCommandReply(reply, 'protobuf'))).toEqual(reply);
    expect(CommandReply.fromJSON(JSON.parse(encodeCommandReply(reply, 'json').toString()))).toEqual(reply);
    expect(StateReport.decode(encodeStateReport({ firmware: 'x', interval_ms: 1000 }, 'protobuf')).reported).toEqual({ firmware: 'x', interval_ms: 1000 });
  });
});

describe('message ids and trace context', () => {
  it('numbers messages per device with a run id, never repeating', () => {
    const ids = new MessageIds('ws-1', 'run1');
    const seen = new Set(Array.from({ length: 1000 }, () => ids.next()));
    expect(seen.size).toBe(1000);
    expect([...seen][0]).toBe('ws-1-run1-1');
    expect(new MessageIds('ws-1').next()).not.toBe(new MessageIds('ws-1').next());
  });

  it('creates valid, distinct W3C traceparent values', () => {
    const values = Array.from({ length: 5000 }, newTraceparent);
    for (const v of values.slice(0, 50)) expect(isTraceparent(v)).toBe(true);
    expect(new Set(values).size).toBe(values.length);
    expect(isTraceparent('00-00000000000000000000000000000000-0000000000000001-01')).toBe(false);
  });
});
