import { DeliverPolicy, headers, JetStreamClient, JetStreamManager, JSONCodec, MsgHdrs, NatsConnection, NatsError } from 'nats';
import { deadLettersOf, JETSTREAM_ERROR, jetStreamErrorCode, parseDeviceSubject } from '@iot-mesh/runtime';
import type { DeadLetterArchive, DeadLetterCountQuery, DeadLetterQuery, StoredDeadLetter } from '../domain/dead-letters';
import { DEAD_LETTER_HEADERS } from './dead-letters';

/** Most stream messages one list call looks at when filtering by reason: a page may come back short, with a token to go on. */
const SCAN_BUDGET = 5000;

/** The dead letter's own headers, not the original's. */
const OWN_HEADERS = new Set<string>([...Object.values(DEAD_LETTER_HEADERS), 'Nats-Msg-Id', 'Nats-Stream', 'Nats-Sequence', 'Nats-Time-Stamp', 'Nats-Subject']);

/** A message read back from the stream. */
interface StoredMsg {
  seq: number;
  subject: string;
  time: Date;
  header?: MsgHdrs;
  data: Uint8Array;
}

const json = JSONCodec();

function isMissing(err: unknown): boolean {
  return jetStreamErrorCode(err) === JETSTREAM_ERROR.noMessage || (err as NatsError)?.code === '404';
}

/** Reads a stored dead letter; undefined when its subject is not a dead letter's. */
function toDeadLetter(msg: StoredMsg): StoredDeadLetter | undefined {
  const parts = msg.subject.split('.');
  if (parts.length !== 5 || parts[0] !== 'iot' || parts[2] !== 'dlq') return undefined;
  const h = msg.header;
  const get = (k: string) => h?.get(k) ?? '';
  const original: Record<string, string> = {};
  for (const key of h?.keys() ?? []) if (!OWN_HEADERS.has(key)) original[key] = h!.get(key);
  const received = get(DEAD_LETTER_HEADERS.receivedTime);
  return {
    sequence: msg.seq,
    tenantId: parts[1],
    deviceId: parts[4] === '_' ? '' : parts[4],
    reason: get(DEAD_LETTER_HEADERS.reason),
    detail: get(DEAD_LETTER_HEADERS.detail),
    sqlstate: get(DEAD_LETTER_HEADERS.sqlstate),
    messageId: get(DEAD_LETTER_HEADERS.messageId),
    originalSubject: get(DEAD_LETTER_HEADERS.subject),
    receivedAt: received ? new Date(received) : undefined,
    deadLetteredAt: msg.time,
    size: Number(get(DEAD_LETTER_HEADERS.size) || msg.data.byteLength),
    truncated: get(DEAD_LETTER_HEADERS.truncated) === 'true',
    payload: Buffer.from(msg.data),
    headers: original,
  };
}

/**
 * The DEAD_LETTERS stream as an archive: read with direct gets (the stream
 * allows them) by subject — `iot.<tenant>.dlq.>` or one device's subject —
 * so a tenant sees only its own dead letters.
 */
export class StreamDeadLetterArchive implements DeadLetterArchive {
  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    private readonly stream: string,
  ) {}

  /**
   * The next stored message on `subject` at or after `seq`, or undefined: a
   * JetStream direct get (nats.js does not export its direct-get client).
   */
  private async next(subject: string, seq: number): Promise<StoredMsg | undefined> {
    const reply = await this.nc.request(`$JS.API.DIRECT.GET.${this.stream}`, json.encode({ seq, next_by_subj: subject }), { timeout: 5000 });
    const h = reply.headers;
    if (h?.code === 404) return undefined;
    if (!h || h.code >= 400) throw new Error(`direct get from ${this.stream} failed: ${h?.code ?? 'no headers'} ${h?.description ?? ''}`);
    return { seq: Number(h.get('Nats-Sequence')), subject: h.get('Nats-Subject'), time: new Date(h.get('Nats-Time-Stamp')), header: h, data: reply.data };
  }

  async list(query: DeadLetterQuery): Promise<{ items: StoredDeadLetter[]; next?: number }> {
    const subject = deadLettersOf(query.tenantId, query.deviceId);
    const items: StoredDeadLetter[] = [];
    let seq = Math.max(1, query.fromSequence);
    for (let scanned = 0; scanned < SCAN_BUDGET; scanned++) {
      const msg = await this.next(subject, seq);
      if (!msg) return { items };
      seq = msg.seq + 1;
      const letter = toDeadLetter(msg);
      if (!letter || (query.reason && letter.reason !== query.reason)) continue;
      items.push(letter);
      if (items.length === query.limit) break;
    }
    // More may follow: the caller's next page looks from here (an empty last page is possible).
    return { items, next: seq };
  }

  /**
   * Reads the window's dead letters once, headers only, through an ordered
   * consumer that starts at the window's start time, and stops at its end,
   * at the stream's end or after `limit` letters.
   */
  async countByReason(query: DeadLetterCountQuery): Promise<{ byReason: Map<string, number>; truncated: boolean }> {
    const byReason = new Map<string, number>();
    const consumer = await this.js.consumers.get(this.stream, {
      filterSubjects: deadLettersOf(query.tenantId, query.deviceId),
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: query.start.toISOString(),
      headers_only: true,
    });
    let truncated = false;
    try {
      if ((await consumer.info()).num_pending === 0) return { byReason, truncated };
      const end = query.end.getTime();
      let read = 0;
      let done = false;
      // Fetched in batches that expire, so letters removed meanwhile (replayed, aged out) cannot leave the count waiting.
      while (!done) {
        let got = 0;
        const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
        for await (const msg of batch) {
          got++;
          const past = msg.info.timestampNanos / 1e6 >= end;
          if (!past && read === query.limit) truncated = true;
          else if (!past) {
            read++;
            const reason = msg.headers?.get(DEAD_LETTER_HEADERS.reason) || 'unknown';
            byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
          }
          if (past || truncated || msg.info.pending === 0) {
            done = true;
            break;
          }
        }
        if (got === 0) done = true;
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
    return { byReason, truncated };
  }

  async get(tenantId: string, sequence: number): Promise<StoredDeadLetter | undefined> {
    let msg: StoredMsg;
    try {
      const stored = await this.jsm.streams.getMessage(this.stream, { seq: sequence });
      msg = { seq: stored.seq, subject: stored.subject, time: stored.time, header: stored.header, data: stored.data };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    const letter = toDeadLetter(msg);
    return letter?.tenantId === tenantId ? letter : undefined;
  }

  async replay(letter: StoredDeadLetter): Promise<void> {
    const original = parseDeviceSubject(letter.originalSubject);
    // Only to the tenant's own telemetry subject, whatever a header says.
    if (!original || original.tenantId !== letter.tenantId || original.channel !== 'tel') throw new Error(`dead letter ${letter.sequence} has no telemetry subject of its tenant`);
    const h = headers();
    for (const [key, value] of Object.entries(letter.headers)) if (!key.startsWith('Iot-Original-')) h.set(key, value);
    // A fresh id: a second replay of the same dead letter inside the duplicate window is stored once.
    await this.js.publish(letter.originalSubject, letter.payload, { headers: h, msgID: `dlq-replay:${this.stream}:${letter.sequence}` });
    await this.jsm.streams.deleteMessage(this.stream, letter.sequence, false);
  }
}
