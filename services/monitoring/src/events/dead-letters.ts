import { headers, JetStreamClient, MsgHdrs, NatsConnection } from 'nats';
import { deadLetterSubject, parseDeviceSubject } from '@iot-mesh/runtime';
import type { IngestStats } from '../metrics';
import type { DeadLetterReason } from './telemetry-decoder';

/**
 * Headers of a dead letter. Its body is the original payload byte for byte,
 * or only its first bytes when it was too large (then `truncated` is `true`
 * and `size` says how large the original was). The original's own headers
 * come along too; its `Nats-*` ones renamed `Iot-Original-Nats-*` so they
 * do not act on the dead-letter stream.
 */
export const DEAD_LETTER_HEADERS = {
  reason: 'Iot-Dead-Letter-Reason',
  detail: 'Iot-Dead-Letter-Detail',
  /** The SQLSTATE of a message the database refused (reason `store_rejected`). */
  sqlstate: 'Iot-Dead-Letter-Sqlstate',
  subject: 'Iot-Original-Subject',
  /** The payload's message id when it could be read. */
  messageId: 'Iot-Message-Id',
  /** When the platform received the original (RFC 3339). */
  receivedTime: 'Iot-Original-Time',
  /** The original payload's size in bytes. */
  size: 'Iot-Original-Size',
  /** `true` when the body holds only the first bytes of the original. */
  truncated: 'Iot-Original-Truncated',
} as const;

/** Prefix of renamed NATS headers of the original (`Nats-Msg-Id` → `Iot-Original-Nats-Msg-Id`). */
const ORIGINAL_PREFIX = 'Iot-Original-';
/** Longest copied header value, and most bytes of copied headers in all: a dead letter stays small whatever came in. */
const MAX_HEADER_VALUE = 1024;
const MAX_COPIED_HEADER_BYTES = 8 * 1024;
/** Room kept below the server's max_payload for our own headers. */
const HEADER_ROOM = 16 * 1024;

/** One message to dead-letter. */
export interface DeadLetterInput {
  /** Subject the original arrived on. */
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs;
  reason: DeadLetterReason;
  detail: string;
  /** Tenant and device, when known (otherwise read from the subject, `_` when unusable). */
  tenantId?: string;
  deviceId?: string;
  sqlstate?: string;
  messageId?: string;
  receivedAt?: Date;
  /**
   * Identifies the original (its stream and sequence): the dead letter's
   * `Nats-Msg-Id`, so writing it again after a crash stores it once.
   */
  originalId: string;
}

/** How dead letters are written. */
export interface DeadLetterOptions {
  /** Bytes of an oversize payload kept in its dead letter. */
  prefixBytes: number;
  /** Longest wait for the dead-letter stream's acknowledgement. */
  timeoutMs: number;
}

/** A header value that is one bounded line. */
function oneLine(value: string, max = MAX_HEADER_VALUE): string {
  return value.replace(/[\r\n]+/g, ' ').slice(0, max);
}

/**
 * Writes dead letters to the dead-letter stream and waits for its
 * acknowledgement, so the caller acks the original only once its dead
 * letter is stored. A dead letter is always small enough to publish: an
 * oversize body is cut to a prefix, copied headers are bounded.
 */
export class DeadLetterWriter {
  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly stats: IngestStats,
    private readonly options: DeadLetterOptions,
  ) {}

  /** Stores one dead letter and counts it; rejects when the stream did not acknowledge it (the caller retries). */
  async write(letter: DeadLetterInput): Promise<void> {
    const parsed = parseDeviceSubject(letter.subject);
    const h = headers();
    let copied = 0;
    for (const key of letter.headers?.keys() ?? []) {
      const values = letter.headers!.values(key);
      if (key.startsWith('Iot-Dead-Letter-') || key.startsWith(ORIGINAL_PREFIX)) continue;
      const name = key.startsWith('Nats-') ? `${ORIGINAL_PREFIX}${key}` : key;
      for (const value of values) {
        const v = oneLine(value);
        copied += name.length + v.length + 4;
        if (copied > MAX_COPIED_HEADER_BYTES) break;
        h.append(name, v);
      }
    }
    h.set(DEAD_LETTER_HEADERS.reason, letter.reason);
    h.set(DEAD_LETTER_HEADERS.detail, oneLine(letter.detail || letter.reason, 512));
    h.set(DEAD_LETTER_HEADERS.subject, oneLine(letter.subject, 512));
    if (letter.sqlstate) h.set(DEAD_LETTER_HEADERS.sqlstate, oneLine(letter.sqlstate, 16));
    if (letter.messageId) h.set(DEAD_LETTER_HEADERS.messageId, oneLine(letter.messageId, 256));
    if (letter.receivedAt) h.set(DEAD_LETTER_HEADERS.receivedTime, letter.receivedAt.toISOString());
    h.set(DEAD_LETTER_HEADERS.size, String(letter.data.byteLength));

    const room = Math.max(this.options.prefixBytes, (this.nc.info?.max_payload ?? 1024 * 1024) - HEADER_ROOM);
    const keep = letter.reason === 'oversize' ? this.options.prefixBytes : room;
    const truncated = letter.data.byteLength > keep;
    if (truncated) h.set(DEAD_LETTER_HEADERS.truncated, 'true');
    const body = truncated ? letter.data.subarray(0, Math.min(keep, this.options.prefixBytes)) : letter.data;

    const subject = deadLetterSubject(letter.tenantId ?? parsed?.tenantId, letter.deviceId ?? parsed?.deviceId);
    await this.js.publish(subject, body, { headers: h, msgID: letter.originalId, timeout: this.options.timeoutMs });
    this.stats.deadLetters[letter.reason]++;
    this.stats.onDeadLetter?.(letter.reason);
  }
}
