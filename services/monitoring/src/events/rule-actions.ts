import crypto from 'node:crypto';
import type { Transporter } from 'nodemailer';
import { context, Context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { headers as natsHeaders, NatsConnection } from 'nats';
import { DeliveryState, Notification, NotificationChannel } from '../../../../gen/ts/iot/monitoring/v1/rules';
import { Telemetry } from '../../../../gen/ts/iot/telemetry/v1/telemetry';
import { deviceSubject, eventSubject, injectTraceContext, Logger } from '@iot-mesh/runtime';
import { backoffMs, RetrySchedule, retryScheduleOf } from '../domain/rules-channels';
import type { PlannedAction, RuleMessage } from '../domain/rules';
import { toDataPoint } from '../domain/telemetry';
import type { RuleRepository } from '../store/rule-store';
import type { PointRow } from '../store/telemetry-store';
import { RuleCounters, RuleRef } from './rule-actions-stats';
import { postWebhook } from './rule-actions-webhook';

/** NATS header on telemetry a rule derived: the derivation depth (1 for a point derived from a device's own message). */
export const RULE_DEPTH_HEADER = 'Iot-Rule-Depth';

const tracer = () => trace.getTracer('iot-mesh.rules');

/** How rule actions are queued and retried. */
export interface RuleActionOptions {
  /** Most actions one rule holds (queued, backing off, in flight) in this replica; beyond it new ones are dead-lettered (`queue_full`). */
  queueCapacity: number;
  /** Most actions of one rule in flight at once. */
  concurrency: number;
  /** Retry schedule of derived-metric, republish and webhook actions (notify uses its channel's). */
  retry: RetrySchedule;
  /** Deepest derivation: a derived-metric action on a message this deep is dead-lettered (`depth_limit`). */
  maxDepth: number;
  webhookTimeoutMs: number;
  /** SMTP relay for e-mail channels; undefined: e-mail deliveries fail with that reason. */
  mailer?: Transporter;
  mailFrom: string;
}

/** One action for one message, as the queue carries it. */
export interface ActionJob {
  rule: RuleRef;
  action: PlannedAction;
  message: RuleMessage;
  /** When the platform received the message (latency is measured from it). */
  receivedAt: Date;
  /** The device message's trace: every attempt's span is its child. */
  trace: Context;
}

/** An action that cannot run: why, as the dead letter records it. */
class PermanentFailure extends Error {}

/** Fixed-window limiter per channel (per replica). */
class RateLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  /** Takes one send from the channel's minute; false when the minute is used up. */
  take(channelId: string, perMinute: number, now = Date.now()): boolean {
    const w = this.windows.get(channelId);
    if (!w || now - w.start >= 60_000) {
      this.windows.set(channelId, { start: now, count: 1 });
      return true;
    }
    if (w.count >= perMinute) return false;
    w.count++;
    return true;
  }
}

/** The queue of one rule: bounded, with its own backoff timers, so one rule's failing endpoint holds up nothing else. */
class RuleQueue {
  readonly ready: { job: ActionJob; attempt: number }[] = [];
  /** Jobs backing off or in flight. */
  held = 0;

  get size(): number {
    return this.ready.length + this.held;
  }
}

/**
 * Runs rule actions off the telemetry path: each rule has a bounded queue;
 * a failing action backs off (doubling, capped) and retries, and after its
 * last attempt is dead-lettered with the reason in the delivery log. Every
 * attempt is a span, child of the device message's trace.
 */
export class RuleActions {
  private readonly queues = new Map<string, RuleQueue>();
  private readonly limiter = new RateLimiter();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly idleWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(
    private readonly deps: { nc: NatsConnection; store: RuleRepository; counters: RuleCounters; log: Logger; options: RuleActionOptions },
  ) {}

  /** Queues an action; one that cannot run or does not fit is dead-lettered at once. */
  enqueue(job: ActionJob): void {
    const { action } = job;
    if (action.kind === 'derived_metric' && action.error) return void this.deadLetter(job, 1, `expression: ${action.error}`);
    if (action.kind === 'derived_metric' && job.message.depth >= this.deps.options.maxDepth) {
      return void this.deadLetter(job, 0, `depth_limit: the message is already ${job.message.depth} derivations deep (limit ${this.deps.options.maxDepth})`);
    }
    const queue = this.queueOf(job.rule);
    if (queue.size >= this.deps.options.queueCapacity) return void this.deadLetter(job, 0, `queue_full: ${queue.size} actions of this rule are waiting`);
    queue.ready.push({ job, attempt: 1 });
    this.pump(job.rule, queue);
  }

  /** Actions waiting, backing off or in flight, over every rule. */
  get pending(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.size;
    return n + this.recording;
  }

  private recording = 0;

  /** Resolves when nothing is waiting (for tests and shutdown). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private checkIdle(): void {
    if (this.pending !== 0) return;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Stops retrying: pending actions are dropped (their messages were acked; see the README's delivery notes). */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private queueOf(rule: RuleRef): RuleQueue {
    let q = this.queues.get(rule.id);
    if (!q) this.queues.set(rule.id, (q = new RuleQueue()));
    return q;
  }

  private pump(rule: RuleRef, queue: RuleQueue): void {
    while (!this.stopped && queue.ready.length > 0 && queue.held < this.deps.options.concurrency) {
      const { job, attempt } = queue.ready.shift()!;
      queue.held++;
      void this.attempt(job, attempt, queue);
    }
    this.deps.counters.queueSize(rule, queue.size);
  }

  private async attempt(job: ActionJob, attempt: number, queue: RuleQueue): Promise<void> {
    const { counters } = this.deps;
    let schedule = job.action.kind === 'webhook' ? retryScheduleOf(job.action.retry, this.deps.options.retry) : this.deps.options.retry;
    let outcome = 'ok' as 'ok' | 'retry' | 'dead' | 'rate_limited';
    let reason = '';
    const span = tracer().startSpan(
      `rule ${job.rule.name} ${job.action.kind}`,
      { kind: SpanKind.INTERNAL, attributes: { 'iot.rule.id': job.rule.id, 'iot.rule.name': job.rule.name, 'iot.rule.action': job.action.kind, 'iot.rule.attempt': attempt, 'iot.device.id': job.message.deviceId } },
      job.trace,
    );
    try {
      // The context is passed on explicitly (not only through async context), so every header carries this span.
      const actionContext = trace.setSpan(job.trace, span);
      const result = await context.with(actionContext, () => this.execute(job, actionContext));
      if (result === 'rate_limited') outcome = 'rate_limited';
    } catch (err) {
      reason = (err as Error).message;
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
      if (job.action.kind === 'notify') schedule = (err as { schedule?: RetrySchedule }).schedule ?? schedule;
      outcome = err instanceof PermanentFailure || attempt >= schedule.maxAttempts ? 'dead' : 'retry';
    } finally {
      span.end();
    }

    if (outcome === 'ok') {
      counters.ok(job.rule, job.action.kind, Date.now() - job.receivedAt.getTime());
      if (job.action.kind === 'webhook' || job.action.kind === 'notify') this.record(job, DeliveryState.DELIVERY_STATE_DELIVERED, attempt, '');
    } else if (outcome === 'rate_limited') {
      this.record(job, DeliveryState.DELIVERY_STATE_RATE_LIMITED, 0, 'the channel rate limit was reached');
    } else {
      counters.failed(job.rule, job.action.kind);
      if (outcome === 'dead') this.deadLetter(job, attempt, reason);
    }

    if (outcome === 'retry' && !this.stopped) {
      // Still held (counted in the queue's size) while backing off.
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        queue.held--;
        queue.ready.push({ job, attempt: attempt + 1 });
        this.pump(job.rule, queue);
      }, backoffMs(schedule, attempt));
      this.timers.add(timer);
      this.pump(job.rule, queue);
      return;
    }
    queue.held--;
    this.pump(job.rule, queue);
    this.checkIdle();
  }

  private deadLetter(job: ActionJob, attempts: number, reason: string): void {
    this.deps.counters.deadLettered(job.rule, job.action.kind);
    this.deps.log.warn({ rule: job.rule.id, action: job.action.kind, device: job.message.deviceId, attempts, reason }, 'rule action dead-lettered');
    this.record(job, DeliveryState.DELIVERY_STATE_DEAD_LETTERED, attempts, reason);
  }

  private record(job: ActionJob, state: DeliveryState, attempts: number, lastError: string): void {
    this.recording++;
    void this.deps.store
      .recordDelivery({
        tenantId: job.rule.tenantId,
        ruleId: job.rule.id,
        channelId: job.action.kind === 'notify' ? job.action.channelId : '',
        actionKind: job.action.kind,
        deviceId: job.message.deviceId,
        messageId: job.message.messageId,
        state,
        attempts,
        lastError,
        webhookId: job.action.kind === 'webhook' || job.action.kind === 'notify' ? webhookId(job) : '',
      })
      .catch((err: Error) => this.deps.log.warn({ err: err.message, rule: job.rule.id }, 'rule delivery not recorded'))
      .finally(() => {
        this.recording--;
        this.checkIdle();
      });
  }

  private async execute(job: ActionJob, ctx: Context): Promise<void | 'rate_limited'> {
    const { action, message, rule } = job;
    const { nc, options } = this.deps;
    switch (action.kind) {
      case 'derived_metric': {
        // Published back as the device's telemetry: the writer stores it like any other point (history, latest,
        // live, alerts), idempotently (the same id on a redelivery), and the depth header stops loops.
        const time = latestTime(message.rows);
        const telemetry = Telemetry.encode({
          deviceId: message.deviceId,
          messageId: derivedMessageId(rule.id, action.index, message.messageId),
          points: [{ metric: action.metric, time, numberValue: action.value!.number, boolValue: action.value!.bool, stringValue: action.value!.string }],
        }).finish();
        const headers = injectTraceContext(natsHeaders(), ctx);
        headers.set(RULE_DEPTH_HEADER, String(message.depth + 1));
        await nc.jetstream().publish(deviceSubject(message.tenantId, message.deviceId, 'tel'), telemetry, {
          headers,
          msgID: derivedMessageId(rule.id, action.index, message.messageId),
        });
        return;
      }
      case 'republish': {
        const body = Telemetry.encode({ deviceId: message.deviceId, messageId: message.messageId, points: message.rows.map(pointOf) }).finish();
        nc.publish(eventSubject(message.tenantId, 'rule', action.topic), body, { headers: injectTraceContext(natsHeaders(), ctx) });
        return;
      }
      case 'webhook':
        await postWebhook({ url: action.url, secret: action.secret, id: webhookId(job), body: webhookBody(job, 'rule.matched', pointsJson(message)), timeoutMs: options.webhookTimeoutMs }, ctx);
        return;
      case 'notify':
        return this.notify(job, action, ctx);
    }
  }

  private async notify(job: ActionJob, action: Extract<PlannedAction, { kind: 'notify' }>, ctx: Context): Promise<void | 'rate_limited'> {
    const channel = await this.deps.store.getChannel(job.rule.tenantId, action.channelId);
    if (!channel) throw new PermanentFailure(`notification channel ${action.channelId} does not exist`);
    const schedule = retryScheduleOf(channel.retry);
    try {
      if (!this.limiter.take(channel.id, channel.rateLimitPerMinute)) return 'rate_limited';
      await this.send(job, action, channel, ctx);
    } catch (err) {
      throw Object.assign(err as Error, { schedule });
    }
  }

  private async send(job: ActionJob, action: Extract<PlannedAction, { kind: 'notify' }>, channel: NotificationChannel, ctx: Context): Promise<void> {
    const { message, rule } = job;
    const notification: Notification = {
      tenantId: rule.tenantId,
      ruleId: rule.id,
      ruleName: rule.name,
      title: action.title,
      deviceId: message.deviceId,
      messageId: message.messageId,
      points: message.rows.map(toDataPoint),
      time: job.receivedAt,
    };
    if (channel.webhook) {
      const body = webhookBody(job, 'rule.notification', Notification.toJSON(notification));
      await postWebhook({ url: channel.webhook.url, secret: channel.webhook.secret, id: webhookId(job), body, timeoutMs: this.deps.options.webhookTimeoutMs }, ctx);
    } else if (channel.nats) {
      this.deps.nc.publish(eventSubject(rule.tenantId, 'notification', channel.nats.topic), Notification.encode(notification).finish(), { headers: injectTraceContext(natsHeaders(), ctx) });
    } else if (channel.email) {
      if (!this.deps.options.mailer) throw new PermanentFailure('no SMTP relay is configured (RULES_SMTP_URL)');
      const lines = message.rows.map((r) => `${r.metric} = ${r.value.number ?? r.value.bool ?? r.value.string} at ${r.time.toISOString()}`);
      await this.deps.options.mailer.sendMail({
        from: this.deps.options.mailFrom,
        to: channel.email.to,
        subject: `[${rule.name}] ${action.title}: ${message.deviceId}`,
        text: `Rule ${rule.name} matched a message of device ${message.deviceId} (message ${message.messageId}):\n\n${lines.join('\n')}\n`,
        headers: { 'X-Iot-Rule': rule.id, 'X-Iot-Message': message.messageId },
      });
    }
  }
}

/** Telemetry point of a stored row. */
function pointOf(r: PointRow) {
  return { metric: r.metric, time: r.time, numberValue: r.value.number, boolValue: r.value.bool, stringValue: r.value.string };
}

function latestTime(rows: PointRow[]): Date {
  let t = rows[0]?.time ?? new Date();
  for (const r of rows) if (r.time > t) t = r.time;
  return t;
}

/**
 * Message id of a derived point: stable, so a redelivered source message
 * derives the same (stored once) point, and short whatever the depth (ids are
 * limited to 128 characters).
 */
function derivedMessageId(ruleId: string, index: number, messageId: string): string {
  return `rule:${crypto.createHash('sha256').update(`${ruleId}:${index}:${messageId}`).digest('base64url').slice(0, 32)}`;
}

/** `webhook-id` of a delivery: the same on every attempt. */
function webhookId(job: ActionJob): string {
  return `msg_${job.rule.id}_${job.action.index}_${job.message.messageId}`;
}

function pointsJson(message: RuleMessage) {
  return {
    deviceId: message.deviceId,
    messageId: message.messageId,
    points: message.rows.map((r) => ({ metric: r.metric, time: r.time.toISOString(), value: r.value.number ?? r.value.bool ?? r.value.string })),
  };
}

/** A Standard Webhooks payload: `type`, `timestamp`, `data`. */
function webhookBody(job: ActionJob, type: string, data: unknown): string {
  return JSON.stringify({ type, timestamp: new Date().toISOString(), data: { tenantId: job.rule.tenantId, ruleId: job.rule.id, ruleName: job.rule.name, ...(data as object) } });
}
