import { ROOT_CONTEXT } from '@opentelemetry/api';
import { Alert, AlertRule, severityToJSON } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import { DeliveryState } from '../../../../gen/ts/iot/monitoring/v1/rules';
import type { AlertEventKind, Logger } from '@iot-mesh/runtime';
import { inQuietHours } from '../domain/alerts';
import type { AlertRepository } from '../store/alert-store';
import type { ActionJob, AlertNotice, RuleActions } from './rule-actions';

/**
 * Sends alert notifications through the rule's channels: on raise, every
 * repeat interval while the alert stays raised, and on resolve. They ride the
 * rule actions' durable queue (each channel's retry policy and rate limit, the
 * delivery log with the alert's id). Inside the rule's quiet hours a
 * notification is suppressed — logged as DELIVERY_STATE_SUPPRESSED, not sent
 * later; an alert still raised after the window is told again at its next
 * repeat.
 */
export class AlertNotifier {
  private timer?: NodeJS.Timeout;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly deps: { store: AlertRepository; actions: Pick<RuleActions, 'enqueue' | 'record'>; log: Logger }) {}

  /** Checks for due repeats every `intervalMs`. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.sendRepeats().catch((err: Error) => this.deps.log.warn({ err: err.message }, 'alert repeats not sent')), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Hands an alert change over (the evaluator's callback is synchronous); see {@link idle}. */
  announce(kind: AlertEventKind, alert: Alert): void {
    const p = this.changed(kind, alert)
      .catch((err: Error) => this.deps.log.warn({ err: err.message, alert: alert.id }, 'alert notification not queued'))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Resolves once every change announced so far is queued (or suppressed). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** An alert changed (raised or resolved by this replica): tells its rule's channels. */
  async changed(kind: AlertEventKind, alert: Alert, now = new Date()): Promise<void> {
    if (kind !== 'raised' && kind !== 'resolved') return;
    const rule = await this.deps.store.getRule(alert.tenantId, alert.ruleId);
    if (rule) await this.notify(rule, alert, kind, now);
  }

  /** Sends every repeat due at `now` (each alert taken by one replica only); how many alerts were due. */
  async sendRepeats(now = new Date()): Promise<number> {
    const due = await this.deps.store.takeRepeatsDue(now);
    for (const alert of due) {
      const rule = await this.deps.store.getRule(alert.tenantId, alert.ruleId);
      if (rule) await this.notify(rule, alert, 'repeat', now);
    }
    return due.length;
  }

  private async notify(rule: AlertRule, alert: Alert, event: AlertNotice['event'], now: Date): Promise<void> {
    const n = rule.notification;
    if (!n || n.channelIds.length === 0) return;
    const quiet = inQuietHours(n.quietHours, now);
    const notice: AlertNotice = { id: alert.id, event, message: alert.message, severity: severityToJSON(alert.severity) };
    for (const [index, channelId] of n.channelIds.entries()) {
      const job: ActionJob = {
        rule: { id: rule.id, tenantId: rule.tenantId, name: rule.name },
        action: { kind: 'notify', index, channelId, title: `alert ${event}` },
        message: {
          tenantId: alert.tenantId,
          deviceId: alert.deviceId,
          // One per notification: the webhook-id (and so receivers' de-duplication) tells raise, each repeat and resolve apart.
          messageId: `alert:${alert.id}:${event}:${now.getTime()}`,
          rows: rule.threshold && alert.raiseTime && event !== 'resolved'
            ? [{ tenantId: alert.tenantId, deviceId: alert.deviceId, metric: alert.metric, time: alert.raiseTime, messageId: alert.id, pointIndex: 0, value: { number: alert.value } }]
            : [],
          depth: 0,
        },
        receivedAt: now,
        trace: ROOT_CONTEXT,
        alert: notice,
      };
      if (quiet) this.deps.actions.record(job, DeliveryState.DELIVERY_STATE_SUPPRESSED, 0, 'quiet hours');
      else await this.deps.actions.enqueue(job);
    }
  }
}
