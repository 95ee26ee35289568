import crypto from 'node:crypto';
import type { Transporter } from 'nodemailer';
import { context, Context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { headers as natsHeaders, NatsConnection } from 'nats';
import { DeliveryState, Notification, NotificationChannel } from '../../../../gen/ts/iot/monitoring/v1/rules';
import { Telemetry } from '../../../../gen/ts/iot/telemetry/v1/telemetry';
import { deviceSubject, eventSubject, injectTraceContext, Logger } from '@iot-mesh/runtime';
import { backoffMs, RetrySchedule, retryScheduleOf } from '../domain/rules-channels';
import type { PlannedAction, RuleMessage } from '../domain/rules';
import { toDataPoint } from '../domain/telemetry';
import type { ActionQueueRepository } from '../store/action-queue-store';
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
  /** How long a queued action stays this replica's without a renewal; after it another replica resumes it. */
  leaseMs: number;
}

/** The alert an alert notification is about (alert notifications ride the same queue as rule actions). */
export interface AlertNotice {
  id: string;
  event: 'raised' | 'repeat' | 'resolved';
  message: string;
  severity: string;
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
  /** Set for an alert notification (then `rule` is the alert rule). */
  alert?: AlertNotice;
}

/** A job as the durable queue stores it (JSON). */
interface StoredJob {
  rule: RuleRef;
  action: PlannedAction;
  message: Omit<RuleMessage, 'rows'> & { rows: (Omit<PointRow, 'time'> & { time: string })[] };
  receivedAt: string;
  /** W3C trace context fields of the device message. */
  trace: Record<string, string>;
  alert?: AlertNotice;
}

/** The job as JSON text; 64-bit integers (durations' seconds) as `{"$bigint": "…"}`. */
function storedJob(job: ActionJob): string {
  const carrier: Record<string, string> = {};
  propagation.inject(job.trace, carrier);
  const stored: StoredJob = { ...job, message: { ...job.message, rows: job.message.rows.map((r) => ({ ...r, time: r.time.toISOString() })) }, receivedAt: job.receivedAt.toISOString(), trace: carrier };
  return JSON.stringify(stored, (_k, v) => (typeof v === 'bigint' ? { $bigint: v.toString() } : v));
}

function jobOf(text: string): ActionJob {
  const stored = JSON.parse(text, (_k, v) => (v !== null && typeof v === 'object' && typeof v.$bigint === 'string' ? BigInt(v.$bigint) : v)) as StoredJob;
  return {
    ...stored,
    message: { ...stored.message, rows: stored.message.rows.map((r) => ({ ...r, time: new Date(r.time) })) },
    receivedAt: new Date(stored.receivedAt),
    trace: propagation.extract(ROOT_CONTEXT, stored.trace),
  };
}

/** A job in a rule's queue: the attempt it is at and its row in the durable queue. */
interface QueuedJob {
  job: ActionJob;
  attempt: number;
  queueId: string;
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
  readonly ready: QueuedJob[] = [];
  /** Jobs backing off or in flight. */
  held = 0;
  /** Jobs being written to the durable queue. */
  storing = 0;

  get size(): number {
    return this.ready.length + this.held + this.storing;
  }
}

/**
 * Runs rule actions off the telemetry path: each rule has a bounded queue;
 * a failing action backs off (doubling, capped) and retries, and after its
 * last attempt is dead-lettered with the reason in the delivery log. Every
 * attempt is a span, child of the device message's trace.
 *
 * The queue is durable: {@link enqueue} writes the job to PostgreSQL before it
 * resolves (the rules consumer acks the telemetry message only after), every
 * retry advances its attempt there, and its final outcome deletes it. This
 * replica keeps a lease on its jobs; jobs of a replica that crashed (lease run
 * out) or stopped (lease released) are claimed by a running one and resume at
 * their attempt. Delivery is at least once: a replica that dies between a
 * successful send and the delete sends again (with the same `webhook-id`).
 */
export class RuleActions {
  private readonly queues = new Map<string, RuleQueue>();
  private readonly limiter = new RateLimiter();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly idleWaiters: (() => void)[] = [];
  private stopped = false;
  /** This replica's name on the jobs it holds in the durable queue. */
  private readonly owner = crypto.randomUUID();
  private leaseTimer?: NodeJS.Timeout;
  /** Jobs waiting for the next write to the durable queue (one multi-row INSERT per turn of the event loop). */
  private toStore: { id: string; tenantId: string; ruleId: string; job: string; stored: () => void }[] = [];

  constructor(
    private readonly deps: { nc: NatsConnection; store: RuleRepository; queue: ActionQueueRepository; counters: RuleCounters; log: Logger; options: RuleActionOptions },
  ) {}

  /** Resumes jobs other replicas left (and keeps doing so), and keeps this replica's leases fresh. */
  async start(): Promise<void> {
    await this.resumeOrphans();
    const { leaseMs } = this.deps.options;
    this.leaseTimer = setInterval(() => {
      void this.deps.queue
        .renew(this.owner, leaseMs)
        .then(() => this.resumeOrphans())
        .catch((err: Error) => this.deps.log.warn({ err: err.message }, 'rule action queue upkeep failed'));
    }, Math.max(50, Math.floor(leaseMs / 3)));
    this.leaseTimer.unref();
  }

  /** Claims jobs whose lease ran out (as many as fit) and queues them at their attempt. */
  async resumeOrphans(): Promise<number> {
    if (this.stopped) return 0;
    const claimed = await this.deps.queue.claimExpired(this.owner, this.deps.options.leaseMs, Math.max(0, this.deps.options.queueCapacity - this.pending));
    for (const row of claimed) {
      const job = jobOf(row.job);
      const queue = this.queueOf(job.rule);
      queue.ready.push({ job, attempt: row.attempt, queueId: row.id });
      this.pump(job.rule, queue);
    }
    if (claimed.length > 0) this.deps.log.info({ jobs: claimed.length }, 'resumed queued rule actions another replica left');
    return claimed.length;
  }

  /**
   * Queues an action, durably: resolves once it is stored (acking its message
   * is safe then). One that cannot run or does not fit is dead-lettered at once.
   */
  async enqueue(job: ActionJob): Promise<void> {
    const { action } = job;
    if (action.kind === 'derived_metric' && action.error) return void this.deadLetter(job, 1, `expression: ${action.error}`);
    if (action.kind === 'derived_metric' && job.message.depth >= this.deps.options.maxDepth) {
      return void this.deadLetter(job, 0, `depth_limit: the message is already ${job.message.depth} derivations deep (limit ${this.deps.options.maxDepth})`);
    }
    const queue = this.queueOf(job.rule);
    if (queue.size >= this.deps.options.queueCapacity) return void this.deadLetter(job, 0, `queue_full: ${queue.size} actions of this rule are waiting`);
    const queueId = crypto.randomUUID();
    queue.storing++;
    await new Promise<void>((stored) => {
      this.toStore.push({ id: queueId, tenantId: job.rule.tenantId, ruleId: job.rule.id, job: storedJob(job), stored });
      if (this.toStore.length === 1) setImmediate(() => void this.storeBatch());
    });
    queue.storing--;
    queue.ready.push({ job, attempt: 1, queueId });
    this.pump(job.rule, queue);
  }

  /**
   * Writes the jobs queued since the last write in one statement. A failing
   * database is retried (the telemetry messages stay unacked meanwhile), so an
   * action is never acked without being stored.
   */
  private async storeBatch(): Promise<void> {
    const batch = this.toStore.splice(0);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deps.queue.addMany(this.owner, this.deps.options.leaseMs, batch);
        break;
      } catch (err) {
        this.deps.log.warn({ err: (err as Error).message, jobs: batch.length, attempt }, 'rule actions not stored in the queue; retrying');
        if (this.stopped) return;
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
      }
    }
    for (const b of batch) b.stored();
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

  /** Stops retrying and releases this replica's queued jobs, so a running replica resumes them at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.leaseTimer);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.deps.queue.release(this.owner).catch((err: Error) => this.deps.log.warn({ err: err.message }, 'queued rule actions not released; they resume when their lease runs out'));
  }

  private queueOf(rule: RuleRef): RuleQueue {
    let q = this.queues.get(rule.id);
    if (!q) this.queues.set(rule.id, (q = new RuleQueue()));
    return q;
  }

  private pump(rule: RuleRef, queue: RuleQueue): void {
    while (!this.stopped && queue.ready.length > 0 && queue.held < this.deps.options.concurrency) {
      const queued = queue.ready.shift()!;
      queue.held++;
      void this.attempt(queued, queue);
    }
    this.deps.counters.queueSize(rule, queue.size);
  }

  private async attempt(queued: QueuedJob, queue: RuleQueue): Promise<void> {
    const { job, attempt, queueId } = queued;
    const { counters } = this.deps;
    // Alert notifications are not counted as a rule's actions.
    const counted = !job.alert;
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
      if (counted) counters.ok(job.rule, job.action.kind, Date.now() - job.receivedAt.getTime());
      if (job.action.kind === 'webhook' || job.action.kind === 'notify') this.record(job, DeliveryState.DELIVERY_STATE_DELIVERED, attempt, '', queueId);
      else this.finish(queueId);
    } else if (outcome === 'rate_limited') {
      this.record(job, DeliveryState.DELIVERY_STATE_RATE_LIMITED, 0, 'the channel rate limit was reached', queueId);
    } else {
      if (counted) counters.failed(job.rule, job.action.kind);
      if (outcome === 'dead') this.deadLetter(job, attempt, reason, queueId);
    }

    if (outcome === 'retry') {
      // Stored first: a replica resuming the job after a crash starts at the next attempt.
      await this.deps.queue.setAttempt(queueId, attempt + 1).catch((err: Error) => this.deps.log.warn({ err: err.message, rule: job.rule.id }, 'rule action attempt not stored'));
    }
    if (outcome === 'retry' && !this.stopped) {
      // Still held (counted in the queue's size) while backing off.
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        queue.held--;
        queue.ready.push({ job, attempt: attempt + 1, queueId });
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

  private deadLetter(job: ActionJob, attempts: number, reason: string, queueId?: string): void {
    if (!job.alert) this.deps.counters.deadLettered(job.rule, job.action.kind);
    this.deps.log.warn({ rule: job.rule.id, action: job.action.kind, device: job.message.deviceId, alert: job.alert?.id, attempts, reason }, 'rule action dead-lettered');
    this.record(job, DeliveryState.DELIVERY_STATE_DEAD_LETTERED, attempts, reason, queueId);
  }

  /** Deletes a job that reached its final outcome from the durable queue. */
  private finish(queueId: string): void {
    this.recording++;
    void this.deps.queue
      .remove(queueId)
      .catch((err: Error) => this.deps.log.warn({ err: err.message }, 'finished rule action not removed from the queue'))
      .finally(() => {
        this.recording--;
        this.checkIdle();
      });
  }

  /** Logs a final outcome (then, for a queued job, removes it from the durable queue). */
  record(job: ActionJob, state: DeliveryState, attempts: number, lastError: string, queueId?: string): void {
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
        alertId: job.alert?.id ?? '',
        alertEvent: job.alert?.event ?? '',
      })
      .catch((err: Error) => this.deps.log.warn({ err: err.message, rule: job.rule.id }, 'rule delivery not recorded'))
      .then(() => (queueId ? this.deps.queue.remove(queueId) : undefined))
      .catch((err: Error) => this.deps.log.warn({ err: err.message, rule: job.rule.id }, 'finished rule action not removed from the queue'))
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
      alertId: job.alert?.id ?? '',
      alertEvent: job.alert?.event ?? '',
      alertMessage: job.alert?.message ?? '',
      alertSeverity: job.alert?.severity ?? '',
    };
    if (channel.webhook) {
      const body = webhookBody(job, job.alert ? `alert.${job.alert.event}` : 'rule.notification', Notification.toJSON(notification));
      await postWebhook({ url: channel.webhook.url, secret: channel.webhook.secret, id: webhookId(job), body, timeoutMs: this.deps.options.webhookTimeoutMs }, ctx);
    } else if (channel.nats) {
      this.deps.nc.publish(eventSubject(rule.tenantId, 'notification', channel.nats.topic), Notification.encode(notification).finish(), { headers: injectTraceContext(natsHeaders(), ctx) });
    } else if (channel.email) {
      if (!this.deps.options.mailer) throw new PermanentFailure('no SMTP relay is configured (RULES_SMTP_URL)');
      const lines = message.rows.map((r) => `${r.metric} = ${r.value.number ?? r.value.bool ?? r.value.string} at ${r.time.toISOString()}`);
      const alert = job.alert;
      await this.deps.options.mailer.sendMail({
        from: this.deps.options.mailFrom,
        to: channel.email.to,
        subject: `[${rule.name}] ${action.title}: ${message.deviceId}`,
        text: alert
          ? `Alert ${alert.id} of rule ${rule.name} ${alert.event === 'repeat' ? 'is still raised' : `was ${alert.event}`} (${alert.severity}): ${alert.message}\n`
          : `Rule ${rule.name} matched a message of device ${message.deviceId} (message ${message.messageId}):\n\n${lines.join('\n')}\n`,
        headers: { 'X-Iot-Rule': rule.id, 'X-Iot-Message': message.messageId, ...(alert ? { 'X-Iot-Alert': alert.id, 'X-Iot-Alert-Event': alert.event } : {}) },
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
