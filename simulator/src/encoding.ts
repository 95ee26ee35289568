import crypto from 'node:crypto';
import { PAYLOAD_ENCODINGS, PayloadEncoding, payloadEncoding } from '@iot-mesh/runtime';
import {
  CommandReply,
  CommandRequest,
  DesiredState,
  StateReport,
  Telemetry,
} from '../../gen/ts/iot/telemetry/v1/telemetry';

/** The two encodings of the device payload: one schema, two wire forms. */
export const ENCODINGS = PAYLOAD_ENCODINGS;
export type Encoding = PayloadEncoding;

interface MessageCodec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
  toJSON(message: T): unknown;
  fromJSON(object: unknown): T;
}

function encodeWith<T>(codec: MessageCodec<T>, message: T, encoding: Encoding): Buffer {
  if (encoding === 'json') return Buffer.from(JSON.stringify(codec.toJSON(message)));
  const bytes = codec.encode(message).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function decodeWith<T>(codec: MessageCodec<T>, payload: Uint8Array, encoding: Encoding = payloadEncoding(payload)): T {
  if (encoding === 'json') return codec.fromJSON(JSON.parse(Buffer.from(payload).toString('utf8')));
  return codec.decode(payload);
}

/** Telemetry as bytes: canonical proto3 JSON (`Telemetry.toJSON`) or binary Protobuf. */
export function encodeTelemetry(message: Telemetry, encoding: Encoding): Buffer {
  return encodeWith(Telemetry, message, encoding);
}

/** Telemetry from bytes in either encoding (sniffed when not given). */
export function decodeTelemetry(payload: Uint8Array, encoding?: Encoding): Telemetry {
  return decodeWith(Telemetry, payload, encoding);
}

/** A reported-state message as bytes. */
export function encodeStateReport(reported: Record<string, unknown>, encoding: Encoding): Buffer {
  return encodeWith(StateReport, { reported }, encoding);
}

/** A desired-state message from bytes in either encoding. */
export function decodeDesiredState(payload: Uint8Array): DesiredState {
  return decodeWith(DesiredState, payload);
}

/** A command request from bytes in either encoding. */
export function decodeCommandRequest(payload: Uint8Array): CommandRequest {
  return decodeWith(CommandRequest, payload);
}

/** A command reply as bytes, in the encoding the request came in. */
export function encodeCommandReply(reply: CommandReply, encoding: Encoding): Buffer {
  return encodeWith(CommandReply, reply, encoding);
}

/**
 * Message ids unique across devices and runs: `<device>-<run>-<sequence>`,
 * the run part random per process so a restarted simulator never repeats an
 * id the stream's duplicate window still remembers.
 */
export class MessageIds {
  private sequence = 0;

  constructor(
    readonly deviceId: string,
    readonly runId: string = crypto.randomBytes(4).toString('hex'),
  ) {}

  next(): string {
    return `${this.deviceId}-${this.runId}-${(++this.sequence).toString(36)}`;
  }

  get issued(): number {
    return this.sequence;
  }
}

/** A pool of random bytes refilled in large blocks: ids are needed per message at high rates. */
const pool = Buffer.alloc(64 * 1024);
let poolOffset = pool.length;

function randomHex(bytes: number): string {
  if (poolOffset + bytes > pool.length) {
    crypto.randomFillSync(pool);
    poolOffset = 0;
  }
  const hex = pool.toString('hex', poolOffset, poolOffset + bytes);
  poolOffset += bytes;
  return hex;
}

/** A W3C trace context for a new sampled root span: `00-<trace id>-<span id>-01`. */
export function newTraceparent(): string {
  let traceId = randomHex(16);
  let spanId = randomHex(8);
  // All-zero ids are invalid; with 128 random bits this is theoretical, but cheap to rule out.
  if (/^0+$/.test(traceId)) traceId = '0'.repeat(31) + '1';
  if (/^0+$/.test(spanId)) spanId = '0'.repeat(15) + '1';
  return `00-${traceId}-${spanId}-01`;
}

/** True for a well-formed version-00 `traceparent` value. */
export function isTraceparent(value: string): boolean {
  return /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/.test(value);
}
