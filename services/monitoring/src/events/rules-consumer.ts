import { AckPolicy, ConsumerMessages, DeliverPolicy, JetStreamManager, JsMsg, NatsConnection, nanos } from 'nats';
import { ALL_TELEMETRY, extractTraceContext, JETSTREAM_ERROR, jetStreamErrorCode, Logger } from '@iot-mesh/runtime';
import { CompiledRule, RuleMessage } from '../domain/rules';
import type { KnownDevices } from '../domain/telemetry';
import type { RuleRepository } from '../store/rule-store';
import { RULE_DEPTH_HEADER, RuleActions } from './rule-actions';
import type { RuleCounters } from './rule-actions-stats';
import type { TelemetryDecoder } from './telemetry-decoder';

/** Messages evaluated between two acks (an ack acknowledges every message before it). */
const ACK_EVERY = 256;
/** Longest an evaluated message waits for its ack. */
const ACK_AFTER_MS = 100;
/** Longest a stop waits for the last acks (their actions being stored). */
const STOP_ACK_WAIT_MS = 5000;

/** The rules' durable consumer of the telemetry stream (its own, not the writer's). */
export interface RulesConsumerOptions {
  stream: string;
  durable: string;
  ackWaitMs: number;
  maxAckPending: number;
  /** How often rules are reloaded from the database (changes made through another replica). */
  reloadMs: number;
}

/**
 * Creates (or updates) the rules' durable pull consumer. A new one starts at
 * new messages: rules created on a stream holding days of telemetry must not
 * fire webhooks for all of it. It acks cumulatively (`AckPolicy.All`): the
 * rules evaluate messages in order, so one ack per few hundred messages is
 * enough, which keeps this second consumer of all telemetry cheap.
 */
export async function ensureRulesConsumer(jsm: JetStreamManager, options: RulesConsumerOptions): Promise<void> {
  const changeable = { ack_wait: nanos(options.ackWaitMs), max_ack_pending: options.maxAckPending, max_deliver: -1 };
  const config = { durable_name: options.durable, ack_policy: AckPolicy.All, deliver_policy: DeliverPolicy.New, filter_subject: ALL_TELEMETRY, ...changeable };
  try {
    const info = await jsm.consumers.info(options.stream, options.durable);
    if (info.config.ack_policy === AckPolicy.All) {
      await jsm.consumers.update(options.stream, options.durable, changeable);
      return;
    }
    // An ack policy cannot change in place: one made by an earlier version is replaced (from new messages on).
    await jsm.consumers.delete(options.stream, options.durable);
    await jsm.consumers.add(options.stream, config);
  } catch (err) {
    if (jetStreamErrorCode(err) !== JETSTREAM_ERROR.consumerNotFound) throw err;
    // A replica racing us to create it gets the same config: adding is idempotent then.
    await jsm.consumers.add(options.stream, config);
  }
}

/** The derivation depth a message carries (0: a device's own). */
function depthOf(msg: JsMsg): number {
  const value = msg.headers?.get(RULE_DEPTH_HEADER);
  const n = value ? Number.parseInt(value, 10) : 0;
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/**
 * Evaluates every enabled rule of a message's tenant against it and hands
 * the actions to {@link RuleActions}, whose queues run them; messages are
 * acked (cumulatively, within {@link ACK_AFTER_MS}) once their actions are
 * queued, so actions never hold the stream and never touch the writer's
 * consumer or live streams.
 */
export class RulesConsumer {
  private rules = new Map<string, CompiledRule[]>();
  private messages?: ConsumerMessages;
  private reloadTimer?: NodeJS.Timeout;
  private loop?: Promise<void>;
  private running = false;
  /** The newest evaluated message not yet acked, and how many are behind it. */
  private unacked?: JsMsg;
  private unackedCount = 0;
  private ackTimer?: NodeJS.Timeout;
  /** Actions of evaluated messages still being written to the durable queue. */
  private storing: Promise<void>[] = [];
  /** Acks in order: each waits for the actions of the messages it covers to be stored. */
  private acks: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: {
      nc: NatsConnection;
      decoder: TelemetryDecoder;
      directory: KnownDevices;
      store: RuleRepository;
      actions: RuleActions;
      counters: RuleCounters;
      log: Logger;
      options: RulesConsumerOptions;
    },
  ) {}

  /** Loads the rules and starts consuming. */
  async start(): Promise<void> {
    this.running = true;
    await this.reload();
    this.reloadTimer = setInterval(() => this.reload().catch((err: Error) => this.deps.log.warn({ err: err.message }, 'rules not reloaded')), this.deps.options.reloadMs);
    this.reloadTimer.unref();
    this.ackTimer = setInterval(() => this.ackEvaluated(), ACK_AFTER_MS);
    this.ackTimer.unref();
    this.loop = this.consume();
  }

  /** Reads every enabled rule again and compiles them. */
  async reload(): Promise<void> {
    const byTenant = new Map<string, CompiledRule[]>();
    for (const rule of await this.deps.store.enabledRules()) {
      const list = byTenant.get(rule.tenantId) ?? [];
      list.push(new CompiledRule(rule));
      byTenant.set(rule.tenantId, list);
    }
    this.rules = byTenant;
  }

  private async consume(): Promise<void> {
    const { nc, options, log } = this.deps;
    for (let attempt = 0; this.running; attempt++) {
      try {
        // After the first round the consumer (or the whole stream) may have been deleted: create it again.
        if (attempt > 0) await ensureRulesConsumer(await nc.jetstreamManager(), options);
        const consumer = await nc.jetstream().consumers.get(options.stream, options.durable);
        this.messages = await consumer.consume({ max_messages: 1000, expires: 5000, abort_on_missing_resource: true });
        for await (const msg of this.messages) {
          await this.process(msg);
          this.unacked = msg;
          if (++this.unackedCount >= ACK_EVERY) this.ackEvaluated();
        }
      } catch (err) {
        if (!this.running) return;
        log.warn({ err: (err as Error).message }, 'rules consumption ended; starting again');
      }
      if (this.running) await new Promise((r) => setTimeout(r, 1000));
    }
  }

  /** Acks (cumulatively) everything evaluated so far, once the actions it produced are stored. */
  private ackEvaluated(): void {
    const msg = this.unacked;
    this.unacked = undefined;
    this.unackedCount = 0;
    if (!msg) return;
    const stored = this.storing.splice(0);
    // Chained, so a later ack (which covers every earlier message) never overtakes an earlier one still waiting.
    this.acks = this.acks.then(() => Promise.all(stored)).then(() => msg.ack());
  }

  /** Evaluates one message; it is acked later, with those after it. */
  private async process(msg: JsMsg): Promise<void> {
    const tenantRules = this.tenantOf(msg.subject);
    if (!tenantRules || tenantRules.length === 0) return;
    const receivedAt = new Date(Math.floor(msg.info.timestampNanos / 1e6));
    let decoded;
    for (;;) {
      try {
        decoded = await this.deps.decoder.decode({ subject: msg.subject, data: msg.data, receivedAt });
        break;
      } catch (err) {
        // The directory cannot be read: wait and try again, in order (acks are cumulative, so no message may be skipped).
        this.deps.log.warn({ err: (err as Error).message }, 'rules: device lookup failed; retrying');
        msg.working();
        await new Promise((r) => setTimeout(r, 1000));
        if (!this.running) return;
      }
    }
    // Refused messages are the writer's to dead-letter; rules see only what is stored.
    if (!decoded.ok) return;
    const message: RuleMessage = { tenantId: decoded.tenantId, deviceId: decoded.deviceId, messageId: decoded.messageId, rows: decoded.rows, depth: depthOf(msg) };
    const device = this.deps.directory.get(message.tenantId, message.deviceId);
    const traceContext = extractTraceContext(msg.headers);
    for (const compiled of tenantRules) {
      if (!compiled.selects(device, message, this.deps.directory)) continue;
      const ref = { id: compiled.rule.id, tenantId: compiled.rule.tenantId, name: compiled.rule.name };
      const verdict = compiled.evaluate(device, message);
      if (verdict.error) this.deps.counters.evaluationError(ref);
      if (!verdict.matched) continue;
      this.deps.counters.matched(ref);
      // Stored in the durable queue before this message is acked (see ackEvaluated); not awaited here, so stores batch.
      for (const action of verdict.actions) {
        const stored = this.deps.actions.enqueue({ rule: ref, action, message, receivedAt, trace: traceContext });
        this.storing.push(stored.catch((err: Error) => this.deps.log.error({ err: err.message, rule: ref.id }, 'rule action could not be queued')));
      }
    }
  }

  private tenantOf(subject: string): CompiledRule[] | undefined {
    const tenant = subject.split('.', 2)[1];
    return tenant ? this.rules.get(tenant) : undefined;
  }

  /**
   * Resolves once every message in the stream so far was evaluated and every
   * queued action finished, including the messages derived metrics published
   * meanwhile (tests, shutdown).
   */
  async idle(): Promise<void> {
    const jsm = await this.deps.nc.jetstreamManager();
    for (;;) {
      await this.deps.nc.flush();
      const info = await jsm.consumers.info(this.deps.options.stream, this.deps.options.durable);
      if (info.num_pending === 0 && info.num_ack_pending === 0 && this.deps.actions.pending === 0 && this.storing.length === 0) break;
      if (info.num_pending === 0 && info.num_ack_pending === 0) await this.deps.actions.idle();
      else await new Promise((r) => setTimeout(r, 20));
    }
    await this.deps.counters.flush();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.reloadTimer);
    clearInterval(this.ackTimer);
    await this.messages?.close();
    await this.loop;
    this.ackEvaluated();
    // Acks wait for stores, which retry while the database is down: a stop does not wait for ever (the messages come back).
    await Promise.race([this.acks, new Promise((r) => setTimeout(r, STOP_ACK_WAIT_MS).unref())]);
  }
}
