import { Alert, AlertRule, Comparison } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import { AlertEventKind, durationToMs, Logger } from '@iot-mesh/runtime';
import type { AlertRepository } from '../store/alert-store';
import type { PointRow } from '../store/telemetry-store';
import { inAnyGroup, KnownDevice, KnownDevices, labelsMatch, TelemetryMessage } from './telemetry';

/** Where alert changes go (published as alert events); called only by whoever actually changed the alert. */
export type AlertChanges = (kind: AlertEventKind, alert: Alert) => void;

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
 * Evaluates alert rules against telemetry as the fan-out hands it over.
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
  private chain: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  /** Reloads queued and not yet done: until then any tenant may have rules. */
  private pendingReloads = 0;

  constructor(
    private readonly store: AlertRepository,
    private readonly devices: KnownDevices,
    private readonly changes: AlertChanges,
    private readonly checkIntervalMs: number,
    private readonly log: Logger,
  ) {}

  /** Loads the rules and open alerts, and starts checking no-data rules. */
  async start(): Promise<void> {
    await this.reload();
    for (const alert of await this.store.openAlerts()) this.series(alert.ruleId, alert.deviceId).open = true;
    this.timer = setInterval(() => this.enqueue(() => this.checkNoData()), this.checkIntervalMs);
    this.timer.unref();
  }

  /** Stops checking. */
  stop(): void {
    clearInterval(this.timer);
  }

  /** True when the tenant has enabled rules: only then is its telemetry decoded for evaluation. */
  wants(tenantId: string): boolean {
    return this.pendingReloads > 0 || (this.rules.get(tenantId)?.length ?? 0) > 0;
  }

  /** Takes a message as the fan-out decodes it; evaluated in arrival order, after what came before. */
  receive(decoded: Promise<TelemetryMessage | undefined>): void {
    this.enqueue(async () => {
      const message = await decoded;
      if (message) await this.onTelemetry(message);
    });
  }

  /** Reloads one tenant's rules after another replica changed them, in turn with evaluation. */
  rulesChanged(tenantId: string): void {
    this.pendingReloads++;
    this.enqueue(() => this.reload(tenantId).finally(() => this.pendingReloads--));
  }

  /** Serialises evaluation so samples are judged in arrival order. */
  private enqueue(task: () => Promise<void>): void {
    this.chain = this.chain.then(task).catch((err: Error) => this.log.warn({ err: err.message }, 'alert evaluation failed'));
  }

  /** Waits until everything handed over so far has been evaluated. */
  async idle(): Promise<void> {
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
    return this.selects(rule, this.devices.get(tenantId, deviceId));
  }

  /**
   * A rule without device ids: the device is of the rule's device type (a
   * type's default rule), matches its labels and, when it names groups, is a
   * member of one now.
   */
  private selects(rule: AlertRule, device: KnownDevice | undefined): boolean {
    if (rule.deviceTypeId && device?.deviceTypeId !== rule.deviceTypeId) return false;
    if (!labelsMatch(rule.labels, device?.labels)) return false;
    return rule.groupIds.length === 0 || inAnyGroup(this.devices, device, rule.groupIds);
  }

  private async onTelemetry(message: TelemetryMessage): Promise<void> {
    const rules = this.rules.get(message.tenantId);
    if (!rules || rules.length === 0) return;
    const now = Date.now();
    for (const row of message.rows) {
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
    if (t - s.pendingSince < (durationToMs(c.duration) ?? 0)) return;
    const message = `${rule.metric} ${SYMBOL[c.comparison]} ${c.threshold} (value ${value}) on ${row.deviceId}`;
    s.open = true;
    const alert = await this.store.raise(rule, row.deviceId, value, message, row.time);
    if (alert) this.changes('raised', alert);
  }

  private async resolve(rule: AlertRule, deviceId: string, time: Date): Promise<void> {
    const s = this.series(rule.id, deviceId);
    if (!s.open) return;
    s.open = false;
    const alert = await this.store.resolve(rule.id, deviceId, time);
    if (alert) this.changes('resolved', alert);
  }

  private async checkNoData(): Promise<void> {
    const now = Date.now();
    for (const [tenantId, rules] of this.rules) {
      for (const rule of rules) {
        if (!rule.noData) continue;
        const timeout = durationToMs(rule.noData.timeout) ?? 0;
        const devices = rule.deviceIds.length > 0 ? rule.deviceIds : this.devices.devicesOf(tenantId).filter((d) => this.selects(rule, d)).map((d) => d.deviceId);
        const baseline = Math.max(this.startedAt, rule.updateTime?.getTime() ?? 0);
        for (const deviceId of devices) {
          const s = this.series(rule.id, deviceId);
          if (s.open) continue;
          const last = this.lastSeen.get(`${tenantId}/${deviceId}/${rule.metric}`) ?? baseline;
          if (now - Math.max(last, baseline) < timeout) continue;
          s.open = true;
          const alert = await this.store.raise(rule, deviceId, undefined, `no ${rule.metric} from ${deviceId} for ${Math.round(timeout / 1000)} s`, new Date(now));
          if (alert) this.changes('raised', alert);
        }
      }
    }
  }
}
