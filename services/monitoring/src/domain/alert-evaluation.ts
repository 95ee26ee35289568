import type { NatsConnection, Subscription } from 'nats';
import { Alert, AlertRule, Comparison } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import { eventSubject, Logger, parseDeviceSubject } from '@iot-mesh/runtime';
import { decodeTelemetry, IngestLimits } from '../ingest/decode';
import { DeviceDirectory, labelsMatch } from '../ingest/device-directory';
import type { PointRow } from '../store/telemetry-store';
import { AlertStore } from './alert-store';

/** Subject telling every replica that a tenant's rules changed. */
export function rulesChangedSubject(tenantId: string): string {
  return eventSubject(tenantId, 'alert_rule', 'changed');
}

/** What an alert event is called on NATS: `iot.<tenant>.evt.alert.<kind>`. */
export type AlertEventKind = 'raised' | 'resolved' | 'acknowledged';

/** Publishes an alert event; the body is the binary Protobuf `iot.monitoring.v1.Alert`. */
export function publishAlertEvent(nc: NatsConnection, kind: AlertEventKind, alert: Alert): void {
  nc.publish(eventSubject(alert.tenantId, 'alert', kind), Alert.encode(alert).finish());
}

function durationMs(d: { seconds: bigint; nanos: number } | undefined): number {
  return d ? Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6) : 0;
}

const SYMBOL: Record<number, string> = {
  [Comparison.COMPARISON_GREATER_THAN]: '>',
  [Comparison.COMPARISON_GREATER_OR_EQUAL]: '>=',
  [Comparison.COMPARISON_LESS_THAN]: '<',
  [Comparison.COMPARISON_LESS_OR_EQUAL]: '<=',
};

/** Does `value` breach the threshold? */
export function breaches(c: Comparison, value: number, threshold: number): boolean {
  switch (c) {
    case Comparison.COMPARISON_GREATER_THAN:
      return value > threshold;
    case Comparison.COMPARISON_GREATER_OR_EQUAL:
      return value >= threshold;
    case Comparison.COMPARISON_LESS_THAN:
      return value < threshold;
    case Comparison.COMPARISON_LESS_OR_EQUAL:
      return value <= threshold;
    default:
      return false;
  }
}

/** Is `value` back past the threshold by the hysteresis (so a raised alert resolves)? */
export function clears(c: Comparison, value: number, threshold: number, hysteresis: number): boolean {
  switch (c) {
    case Comparison.COMPARISON_GREATER_THAN:
      return value <= threshold - hysteresis;
    case Comparison.COMPARISON_GREATER_OR_EQUAL:
      return value < threshold - hysteresis;
    case Comparison.COMPARISON_LESS_THAN:
      return value >= threshold + hysteresis;
    case Comparison.COMPARISON_LESS_OR_EQUAL:
      return value > threshold + hysteresis;
    default:
      return true;
  }
}

interface SeriesState {
  /** Device time since which the threshold has been breached without a break. */
  pendingSince?: number;
  open: boolean;
}

/**
 * Evaluates alert rules against telemetry as it arrives on core NATS.
 * Threshold rules use device time: the condition must hold across samples
 * spanning at least `duration`, and resolves once the value is back past
 * the threshold by `hysteresis`. No-data rules use wall-clock time since the
 * last sample received. Every replica may evaluate: the database lets only
 * one open alert exist per rule and device, and events are published only by
 * whoever actually changed it.
 */
export class AlertEvaluator {
  private rules = new Map<string, AlertRule[]>();
  private readonly state = new Map<string, SeriesState>();
  private readonly lastSeen = new Map<string, number>();
  private readonly subscriptions: Subscription[] = [];
  private chain: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();

  constructor(
    private readonly nc: NatsConnection,
    private readonly store: AlertStore,
    private readonly directory: DeviceDirectory,
    private readonly limits: IngestLimits,
    private readonly checkIntervalMs: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.reload();
    for (const alert of await this.store.openAlerts()) this.series(alert.ruleId, alert.deviceId).open = true;
    this.subscriptions.push(
      this.nc.subscribe('iot.*.dev.*.tel', { callback: (err, msg) => !err && this.enqueue(() => this.onTelemetry(msg.subject, msg.data)) }),
      this.nc.subscribe('iot.*.evt.alert_rule.changed', {
        callback: (err, msg) => !err && this.enqueue(() => this.reload(msg.subject.split('.')[1])),
      }),
    );
    await this.nc.flush();
    this.timer = setInterval(() => this.enqueue(() => this.checkNoData()), this.checkIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    for (const s of this.subscriptions) s.unsubscribe();
  }

  /** Serialises evaluation so samples are judged in arrival order. */
  private enqueue(task: () => Promise<void>): void {
    this.chain = this.chain.then(task).catch((err: Error) => this.log.warn({ err: err.message }, 'alert evaluation failed'));
  }

  /** Waits until everything received so far has been evaluated. */
  async idle(): Promise<void> {
    await this.nc.flush();
    await this.chain;
  }

  /** Reloads the enabled rules of one tenant (or all). */
  async reload(tenantId?: string): Promise<void> {
    const rules = await this.store.enabledRules(tenantId);
    if (tenantId === undefined) this.rules = new Map();
    else this.rules.delete(tenantId);
    for (const rule of rules) {
      const list = this.rules.get(rule.tenantId) ?? [];
      list.push(rule);
      this.rules.set(rule.tenantId, list);
    }
  }

  private series(ruleId: string, deviceId: string): SeriesState {
    const key = `${ruleId}/${deviceId}`;
    let s = this.state.get(key);
    if (!s) this.state.set(key, (s = { open: false }));
    return s;
  }

  private applies(rule: AlertRule, deviceId: string, tenantId: string): boolean {
    if (rule.deviceIds.length > 0) return rule.deviceIds.includes(deviceId);
    return labelsMatch(rule.labels, this.directory.get(tenantId, deviceId)?.labels);
  }

  private async onTelemetry(subject: string, data: Uint8Array): Promise<void> {
    const parsed = parseDeviceSubject(subject);
    const rules = parsed && this.rules.get(parsed.tenantId);
    if (!parsed || !rules || rules.length === 0) return;
    const decoded = await decodeTelemetry({ subject, data, receivedAt: new Date() }, this.limits, this.directory);
    if (!decoded.ok) return;
    const now = Date.now();
    for (const row of decoded.rows) {
      this.lastSeen.set(`${row.tenantId}/${row.deviceId}/${row.metric}`, now);
      for (const rule of rules) {
        if (rule.metric !== row.metric || !this.applies(rule, row.deviceId, row.tenantId)) continue;
        if (rule.threshold) await this.evaluateThreshold(rule, row);
        else if (rule.noData) await this.resolve(rule, row.deviceId, new Date(now));
      }
    }
  }

  private async evaluateThreshold(rule: AlertRule, row: PointRow): Promise<void> {
    const value = row.value.number ?? (row.value.bool === undefined ? undefined : row.value.bool ? 1 : 0);
    if (value === undefined) return;
    const c = rule.threshold!;
    const s = this.series(rule.id, row.deviceId);
    const t = row.time.getTime();
    if (s.open) {
      if (clears(c.comparison, value, c.threshold, c.hysteresis)) {
        s.pendingSince = undefined;
        await this.resolve(rule, row.deviceId, row.time);
      }
      return;
    }
    if (!breaches(c.comparison, value, c.threshold)) {
      s.pendingSince = undefined;
      return;
    }
    s.pendingSince ??= t;
    if (t - s.pendingSince < durationMs(c.duration)) return;
    const message = `${rule.metric} ${SYMBOL[c.comparison]} ${c.threshold} (value ${value}) on ${row.deviceId}`;
    s.open = true;
    const alert = await this.store.raise(rule, row.deviceId, value, message, row.time);
    if (alert) publishAlertEvent(this.nc, 'raised', alert);
  }

  private async resolve(rule: AlertRule, deviceId: string, time: Date): Promise<void> {
    const s = this.series(rule.id, deviceId);
    if (!s.open) return;
    s.open = false;
    const alert = await this.store.resolve(rule.id, deviceId, time);
    if (alert) publishAlertEvent(this.nc, 'resolved', alert);
  }

  private async checkNoData(): Promise<void> {
    const now = Date.now();
    for (const [tenantId, rules] of this.rules) {
      for (const rule of rules) {
        if (!rule.noData) continue;
        const timeout = durationMs(rule.noData.timeout);
        const devices = rule.deviceIds.length > 0 ? rule.deviceIds : this.directory.devicesOf(tenantId).filter((d) => labelsMatch(rule.labels, d.labels)).map((d) => d.deviceId);
        const baseline = Math.max(this.startedAt, rule.updateTime?.getTime() ?? 0);
        for (const deviceId of devices) {
          const s = this.series(rule.id, deviceId);
          if (s.open) continue;
          const last = this.lastSeen.get(`${tenantId}/${deviceId}/${rule.metric}`) ?? baseline;
          if (now - Math.max(last, baseline) < timeout) continue;
          s.open = true;
          const alert = await this.store.raise(rule, deviceId, undefined, `no ${rule.metric} from ${deviceId} for ${Math.round(timeout / 1000)} s`, new Date(now));
          if (alert) publishAlertEvent(this.nc, 'raised', alert);
        }
      }
    }
  }
}
