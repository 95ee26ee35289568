import { Consumer, ConsumerDebugEvents, ConsumerMessages, JsMsg, NatsConnection } from 'nats';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger, payloadEncoding, withBatchSpan } from '@iot-mesh/runtime';
import { classifyStoreError, sqlstateOf } from '../store/store-errors';
import type { TelemetryStore } from '../store/telemetry-store';
import type { IngestStats } from '../metrics';
import type { DeadLetterInput, DeadLetterWriter } from './dead-letters';
import { AcceptedTelemetry, TelemetryDecoder } from './telemetry-decoder';

/** How the writer batches. */
export interface WriterOptions {
  stream: string;
  durable: string;
  /** Most messages per batch (one transaction). */
  batchMax: number;
  /** Longest a message waits for its batch to fill. */
  batchWaitMs: number;
  /** The consumer's ack wait: held messages are marked "in progress" well within it. */
  ackWaitMs: number;
  /** Longest pause between retries while the database fails. */
  maxBackoffMs: number;
  /** The consumer's max_deliver: a message on its last delivery is dead-lettered (`max_deliver`) instead of processed again. */
  maxDeliver: number;
  /**
   * Batches in hand at once (each decoded, then committed in its own
   * transaction, independently of the others); 3 unless set. One batch at a
   * time left the database idle while the next was gathered and decoded.
   */
  batchesInFlight?: number;
  /** Most points one transaction writes; a batch with more is written in several, in order. Unbounded unless set. */
  batchMaxPoints?: number;
  /** Most payload bytes per batch (and per pull request). Unbounded unless set. */
  batchMaxBytes?: number;
  /**
   * Most payload bytes this replica holds pulled and not yet acked (queued
   * and in flight); it takes no more from the pull while a message would
   * cross it. Unbounded unless set.
   */
  maxHeldBytes?: number;
}

/** Bytes a message is counted for in the writer's bounds: its payload and subject. */
export function heldSize(msg: { data: Uint8Array; subject: string }): number {
  return msg.data.length + msg.subject.length;
}

/** What the writer needs. */
export interface WriterDeps {
  nc: NatsConnection;
  store: TelemetryStore;
  /** The process's one decoder (shared with the live fan-out). */
  decoder: TelemetryDecoder;
  stats: IngestStats;
  /** Where rejected messages go; the original is acked only after its dead letter is stored. */
  deadLetters: DeadLetterWriter;
  log: Logger;
  options: WriterOptions;
  /** Called with the messages of each committed batch. */
  onCommitted?: (accepted: AcceptedTelemetry[]) => void;
  /** (Re)creates the durable consumer; called before consuming again if consumption ended (consumer deleted, stream recreated). */
  ensureConsumer?: () => Promise<void>;
}

/** A decoded message and the JetStream message it came in. */
interface Held {
  msg: JsMsg;
  decoded: AcceptedTelemetry;
}

/** A message to dead-letter, with its JetStream message. */
interface Refused {
  msg: JsMsg;
  letter: DeadLetterInput;
}

/**
 * The durable writer: pulls from the shared consumer (any number of replicas
 * share it), validates, writes what is good in one transaction per batch and
 * acks only after the commit; what is bad is acked only after its dead letter
 * is stored. No message stops it:
 * - a store error that is the database's (connection, timeout, serialization)
 *   holds the batch and retries it with back-off, keeping its messages
 *   "in progress"; one that is the rows' own fault splits the batch in halves
 *   until the offending messages stand alone, stores the rest and
 *   dead-letters those (`store_rejected`, with the SQLSTATE);
 * - a message on its last permitted delivery (max_deliver) is dead-lettered
 *   without being processed again, so a message that kills its writer cannot
 *   crash-loop the next one;
 * - anything unexpected gives the batch back (nak with a delay) and carries on.
 * Several batches are in hand at once (`batchesInFlight`): while some
 * commit, the next is gathered and decoded, and their transactions overlap
 * in the database; they commit in any order (every write is idempotent and
 * the latest values and rollups are order-independent merges; rows and keys
 * are locked in sorted order, so concurrent batches cannot deadlock).
 * A replica holds at most one batch more than that queued: it pulls more
 * only as it writes, so the rest of the backlog stays available to other
 * replicas.
 * What it holds is bounded by configuration, not by the load: batches in
 * messages, bytes and points (a batch with more points than a transaction
 * may hold is written in several), and everything pulled and not yet acked
 * in bytes (`maxHeldBytes`): the pump takes no more from the pull while the
 * next message would cross it, and each pull asks the server for at most
 * `batchMaxBytes`. `stats.heldBytes` / `stats.heldPoints` say what is held.
 */
export class TelemetryWriter {
  private readonly queue: JsMsg[] = [];
  /** Messages taken from the queue and not yet acked (at most `batchesInFlight` batches). */
  private readonly inFlight = new Set<JsMsg>();
  /** Payload bytes of the queue. */
  private queuedBytes = 0;
  /** A message taken from the pull that waits for room (not counted as held; marked in progress like the rest). */
  private waiting?: JsMsg;
  private messages?: ConsumerMessages;
  private running = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  /** Set while the pump waits for this replica to hold fewer messages. */
  private room?: () => void;
  private heartbeat?: NodeJS.Timeout;

  constructor(private readonly deps: WriterDeps) {}

  /** Starts pulling and writing. */
  async start(): Promise<void> {
    this.running = true;
    await this.consume();
    // Well within the ack wait, so a batch being committed (or held while the database is away) is never redelivered elsewhere.
    this.heartbeat = setInterval(() => this.markInProgress(), Math.max(500, Math.floor(this.deps.options.ackWaitMs / 3)));
    this.heartbeat.unref();
    this.loop = this.run().catch((err: Error) => this.deps.log.error({ err: err.message }, 'telemetry writer stopped unexpectedly'));
  }

  private get batchesInFlight(): number {
    return Math.max(1, this.deps.options.batchesInFlight ?? 3);
  }

  /** Most messages this replica holds (queued and in flight) before it stops pulling. */
  private get holdLimit(): number {
    return (this.batchesInFlight + 1) * this.deps.options.batchMax;
  }

  private get batchMaxBytes(): number {
    return this.deps.options.batchMaxBytes ?? Infinity;
  }

  /** Whether `msg` may join what this replica holds: always when it holds nothing, so one message larger than the bound still passes. */
  private hasRoomFor(msg: JsMsg): boolean {
    const held = this.queue.length + this.inFlight.size;
    if (held === 0) return true;
    return held < this.holdLimit && this.deps.stats.heldBytes + heldSize(msg) <= (this.deps.options.maxHeldBytes ?? Infinity);
  }

  /** Counts bytes and points into (positive) or out of (negative) what this replica holds. */
  private hold(bytes: number, points: number): void {
    const stats = this.deps.stats;
    stats.heldBytes += bytes;
    stats.heldPoints += points;
    stats.heldBytesPeak = Math.max(stats.heldBytesPeak, stats.heldBytes);
    stats.heldPointsPeak = Math.max(stats.heldPointsPeak, stats.heldPoints);
    stats.onHeld?.(stats.heldBytes, stats.heldPoints);
  }

  /** Starts pulling; if pulling ever ends while running, starts again (recreating the consumer when needed). */
  private async consume(): Promise<void> {
    const { nc, options } = this.deps;
    const consumer = await nc.jetstream().consumers.get(options.stream, options.durable);
    const messages = await consumer.consume({
      // By bytes when bounded (nats.js then asks for at most 100 messages a request), else by messages.
      ...(options.batchMaxBytes ? { max_bytes: options.batchMaxBytes } : { max_messages: options.batchMax }),
      // End (and let us recreate it) rather than wait for someone else to restore a deleted consumer or stream.
      abort_on_missing_resource: true,
      expires: 5000,
    });
    this.messages = messages;
    void this.pump(messages);
    if (options.batchMaxBytes) void this.watchForOversize(consumer, messages);
    void messages.closed().then(async (err) => {
      if (!this.running) return;
      this.deps.log.warn({ err: err instanceof Error ? err.message : undefined }, 'telemetry consumption ended; starting again');
      for (let delay = 500; this.running; delay = Math.min(delay * 2, this.deps.options.maxBackoffMs)) {
        await sleep(delay);
        if (!this.running) return;
        try {
          await this.deps.ensureConsumer?.();
          await this.consume();
          return;
        } catch (e) {
          this.deps.log.warn({ err: (e as Error).message, retryInMs: delay }, 'cannot consume telemetry yet');
        }
      }
    });
  }

  /**
   * A message larger than a pull asks for (stored before the stream's size
   * limit, or under a larger one) is never delivered to a pull by bytes: the
   * server ends each such request empty, at once, and the consumer would
   * stall behind it. Several requests in a row ended with nothing delivered
   * while this replica holds nothing: one message is fetched with no byte
   * limit and taken like any other (the decoder dead-letters it as oversize).
   * An idle consumer's expiring requests look the same; the fetch then
   * returns nothing.
   */
  private async watchForOversize(consumer: Consumer, messages: ConsumerMessages): Promise<void> {
    let empty = 0;
    let received = this.deps.stats.messagesReceived;
    let fetching = false;
    for await (const status of await messages.status()) {
      if (status.type !== ConsumerDebugEvents.Discard) continue;
      empty = this.deps.stats.messagesReceived === received ? empty + 1 : 0;
      received = this.deps.stats.messagesReceived;
      if (empty < 3 || fetching || !this.running || this.queue.length + this.inFlight.size > 0) continue;
      empty = 0;
      fetching = true;
      void (async () => {
        try {
          for await (const msg of await consumer.fetch({ max_messages: 1, expires: 2000 })) {
            this.deps.stats.messagesReceived++;
            this.deps.stats.onMessage?.(payloadEncoding(msg.data));
            this.admit(msg);
          }
        } catch (err) {
          this.deps.log.warn({ err: (err as Error).message }, 'fetching a message larger than a pull failed');
        } finally {
          fetching = false;
        }
      })();
    }
  }

  /** Puts a pulled message on the queue (counted as held) and wakes the batcher when a batch is ready. */
  private admit(msg: JsMsg): void {
    this.queue.push(msg);
    this.queuedBytes += heldSize(msg);
    this.hold(heldSize(msg), 0);
    this.deps.stats.queued = this.queue.length;
    if (this.queue.length === 1 || this.queue.length >= this.deps.options.batchMax || this.queuedBytes >= this.batchMaxBytes) this.wake?.();
  }

  /**
   * Moves pulled messages onto the queue. The iterator asks the server for
   * more only as we take from it, so pausing here while this replica holds
   * its limit is what keeps it from pulling the whole backlog.
   */
  private async pump(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const msg of messages) {
        this.deps.stats.messagesReceived++;
        this.deps.stats.onMessage?.(payloadEncoding(msg.data));
        if (!this.hasRoomFor(msg)) {
          this.waiting = msg;
          while (this.running && !this.hasRoomFor(msg)) await new Promise<void>((resolve) => (this.room = resolve));
          this.waiting = undefined;
          if (!this.running) {
            msg.nak();
            break;
          }
        }
        this.admit(msg);
      }
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'telemetry consumption failed');
    }
  }

  /** Lets the pump look again for room (called whenever messages leave this replica). */
  private released(): void {
    const room = this.room;
    this.room = undefined;
    room?.();
  }

  /** Takes `msg` out of what this replica holds; false when it was not held. */
  private leave(msg: JsMsg): boolean {
    if (!this.inFlight.delete(msg)) return false;
    this.hold(-heldSize(msg), 0);
    return true;
  }

  /** Stops pulling, finishes (or gives back) the batch in hand and returns queued messages for redelivery. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.messages?.stop();
    this.wake?.();
    this.room?.();
    const timeout = new AbortController();
    await Promise.race([this.loop, sleep(5000, undefined, { signal: timeout.signal }).catch(() => undefined)]);
    timeout.abort();
    clearInterval(this.heartbeat);
    for (const msg of [...this.inFlight, ...this.queue.splice(0)]) msg.nak();
    this.inFlight.clear();
    this.queuedBytes = 0;
    // Decoded points are given back by their batches as they end.
    this.hold(-this.deps.stats.heldBytes, 0);
  }

  private markInProgress(): void {
    for (const msg of this.inFlight) msg.working();
    for (const msg of this.queue) msg.working();
    this.waiting?.working();
  }

  /** Resolves when woken (a message arrived, a batch filled, stop) or after `ms`. */
  private waitForWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === Infinity ? undefined : setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  /**
   * Takes batches off the queue and processes up to `batchesInFlight` of
   * them at once: a new batch starts as soon as one finishes, so decoding,
   * committing and pulling overlap and the database always has work.
   */
  private async run(): Promise<void> {
    const { batchMax, batchWaitMs } = this.deps.options;
    const batchMaxBytes = this.batchMaxBytes;
    const active = new Set<Promise<void>>();
    try {
      while (this.running) {
        while (active.size >= this.batchesInFlight) await Promise.race(active);
        if (this.queue.length === 0) await this.waitForWake(Infinity);
        // A batch fills while the others commit: small transactions would cost more per row than the wait.
        if (this.running && this.queue.length < batchMax && this.queuedBytes < batchMaxBytes) await this.waitForWake(batchWaitMs);
        if (!this.running) break;
        let take = 0;
        for (let bytes = 0; take < Math.min(batchMax, this.queue.length); take++) {
          bytes += heldSize(this.queue[take]);
          if (take > 0 && bytes > batchMaxBytes) break;
        }
        const batch = this.queue.splice(0, take);
        for (const msg of batch) this.queuedBytes -= heldSize(msg);
        this.deps.stats.queued = this.queue.length;
        if (batch.length === 0) continue;
        for (const msg of batch) this.inFlight.add(msg);
        // One consumer span per batch, linked to each message's publisher; the store's queries are its children.
        const current: Promise<void> = withBatchSpan(batch, () => this.process(batch), { destination: this.deps.options.stream, consumerGroup: this.deps.options.durable }).finally(() =>
          active.delete(current),
        );
        active.add(current);
      }
    } finally {
      await Promise.all(active);
    }
  }

  /** Acks a message this replica is done with. */
  private done(msg: JsMsg): void {
    msg.ack();
    this.leave(msg);
    this.released();
  }

  /** Retries `fn` with back-off until it succeeds or the writer stops (then undefined). */
  private async retrying<T>(what: string, fn: () => Promise<T>, onFailure?: () => void): Promise<T | undefined> {
    for (let delay = 100; ; delay = Math.min(delay * 2, this.deps.options.maxBackoffMs)) {
      try {
        return await fn();
      } catch (err) {
        onFailure?.();
        this.deps.log.warn({ err: (err as Error).message, retryInMs: delay }, `${what} failed; holding the batch and retrying`);
        if (!this.running) return undefined;
        await sleep(delay);
        if (!this.running) return undefined;
      }
    }
  }

  /** Processes a batch; never rejects: an unexpected error gives the batch back for redelivery, after a pause. */
  private async process(batch: JsMsg[]): Promise<void> {
    try {
      await this.processBatch(batch);
    } catch (err) {
      this.deps.log.error({ err: (err as Error).message, messages: batch.length }, 'a telemetry batch failed unexpectedly; giving it back for redelivery');
      for (const msg of batch) {
        if (!this.leave(msg)) continue;
        try {
          msg.nak(this.deps.options.maxBackoffMs);
        } catch {
          // The connection is gone: the ack wait redelivers it.
        }
      }
      this.released();
    }
  }

  /**
   * Decodes a batch and writes it in parts of at most `batchMaxPoints`
   * points (one transaction each, in order): writes the good messages,
   * dead-letters the rest, and acks. Only the part in hand is held decoded.
   */
  private async processBatch(batch: JsMsg[]): Promise<void> {
    const { decoder, options } = this.deps;
    const maxPoints = options.batchMaxPoints ?? Infinity;
    let accepted: Held[] = [];
    let refused: Refused[] = [];
    let points = 0;
    /** Decoded points this batch counts as held, given back however it ends. */
    let holding = 0;
    try {
      for (const msg of batch) {
        // The stream's own timestamp is stable across redeliveries, so points without a time keep theirs.
        const receivedAt = new Date(Math.floor(msg.info.timestampNanos / 1e6));
        const originalId = `${msg.info.stream}:${msg.info.streamSequence}`;
        const base = { subject: msg.subject, data: msg.data, headers: msg.headers, receivedAt, originalId };
        if (msg.info.redeliveryCount >= options.maxDeliver) {
          refused.push({ msg, letter: { ...base, reason: 'max_deliver', detail: `delivered ${msg.info.redeliveryCount} times without being stored` } });
          continue;
        }
        const decoded = await this.retrying('device lookup', () => decoder.decode({ subject: msg.subject, data: msg.data, receivedAt }, { admit: true }));
        if (!decoded) return; // stopping: stop() gives the batch back
        if (!decoded.ok) {
          refused.push({ msg, letter: { ...base, reason: decoded.reason, detail: decoded.detail, tenantId: decoded.tenantId, deviceId: decoded.deviceId } });
          continue;
        }
        this.hold(0, decoded.rows.length);
        holding += decoded.rows.length;
        if (accepted.length > 0 && points + decoded.rows.length > maxPoints) {
          if (!(await this.commit(accepted, refused))) return;
          this.hold(0, -points);
          holding -= points;
          accepted = [];
          refused = [];
          points = 0;
        }
        accepted.push({ msg, decoded });
        points += decoded.rows.length;
      }
      await this.commit(accepted, refused);
    } finally {
      this.hold(0, -holding);
    }
  }

  /** Writes one part's good messages, dead-letters its refused ones and acks each; false when the writer stopped first. */
  private async commit(accepted: Held[], refused: Refused[]): Promise<boolean> {
    const written = await this.store(accepted);
    if (!written) return false;
    for (const { held, err } of written.rejected) {
      const receivedAt = new Date(Math.floor(held.msg.info.timestampNanos / 1e6));
      refused.push({
        msg: held.msg,
        letter: {
          subject: held.msg.subject,
          data: held.msg.data,
          headers: held.msg.headers,
          receivedAt,
          originalId: `${held.msg.info.stream}:${held.msg.info.streamSequence}`,
          reason: 'store_rejected',
          detail: `the database refused it: ${(err as Error).message}`,
          sqlstate: sqlstateOf(err),
          tenantId: held.decoded.tenantId,
          deviceId: held.decoded.deviceId,
          messageId: held.decoded.messageId,
        },
      });
    }
    for (const { msg } of written.stored) this.done(msg);
    if (written.stored.length > 0) this.deps.onCommitted?.(written.stored.map((a) => a.decoded));
    // Each original is acked only once the dead-letter stream acknowledged its dead letter.
    await Promise.all(
      refused.map(async ({ msg, letter }) => {
        const stored = await this.retrying(
          'dead-lettering',
          async () => {
            await this.deps.deadLetters.write(letter);
            return true;
          },
          () => this.deps.stats.deadLetterFailures++,
        );
        if (stored) this.done(msg);
      }),
    );
    return true;
  }

  /**
   * Writes the accepted messages: the whole batch in one transaction when it
   * can; on an error that is the rows' own fault, each half on its own,
   * down to single messages, which are then refused. Undefined when the
   * writer stopped first.
   */
  private async store(accepted: Held[]): Promise<{ stored: Held[]; rejected: { held: Held; err: unknown }[] } | undefined> {
    const { store, stats, log, options } = this.deps;
    const stored: Held[] = [];
    const rejected: { held: Held; err: unknown }[] = [];
    const write = async (part: Held[]): Promise<boolean> => {
      const rows = part.flatMap((a) => a.decoded.rows);
      for (let delay = 100; ; delay = Math.min(delay * 2, options.maxBackoffMs)) {
        try {
          if (rows.length > 0) {
            const started = Date.now();
            const result = await store.write(rows);
            const millis = Date.now() - started;
            stats.batchesCommitted++;
            stats.pointsCommitted += rows.length;
            stats.rowsInserted += result.inserted;
            stats.lastBatchPoints = rows.length;
            stats.writeMillis += millis;
            stats.onBatch?.(rows.length, millis);
          }
          stored.push(...part);
          return true;
        } catch (err) {
          if (classifyStoreError(err) === 'permanent') {
            if (part.length === 1) {
              log.warn({ err: (err as Error).message, sqlstate: sqlstateOf(err), messageId: part[0].decoded.messageId }, 'the database refused a telemetry message; dead-lettering it');
              rejected.push({ held: part[0], err });
              return true;
            }
            const half = Math.ceil(part.length / 2);
            return (await write(part.slice(0, half))) && (await write(part.slice(half)));
          }
          stats.writeFailures++;
          stats.onWriteFailure?.();
          log.warn({ err: (err as Error).message, sqlstate: sqlstateOf(err), retryInMs: delay }, 'telemetry write failed; holding the batch and retrying');
          if (!this.running) return false;
          await sleep(delay);
          if (!this.running) return false;
        }
      }
    };
    return (await write(accepted)) ? { stored, rejected } : undefined;
  }
}
