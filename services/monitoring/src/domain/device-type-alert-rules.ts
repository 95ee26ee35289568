import type { DefaultAlertRule } from '../../../../gen/ts/iot/device/v1/device_types';
import { AlertRule, Severity } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import type { Logger } from '@iot-mesh/runtime';
import type { AlertRepository } from '../store/alert-store';
import { ruleViolations } from './alerts';

/** How long a failed sync of a type's rules waits before it is tried again. */
const RETRY_MS = 5000;

/** The alert rule a device type's default rule becomes: owned by the type, enabled, for its devices only. */
export function typeAlertRule(tenantId: string, deviceTypeId: string, rule: DefaultAlertRule): AlertRule {
  return {
    id: '',
    tenantId,
    name: rule.name,
    metric: rule.metric,
    deviceIds: [],
    labels: {},
    groupIds: [],
    threshold: rule.threshold,
    noData: rule.noData,
    severity: rule.severity || Severity.SEVERITY_WARNING,
    enabled: true,
    createTime: undefined,
    updateTime: undefined,
    notification: undefined,
    deviceTypeId,
  };
}

/** What {@link DeviceTypeAlertRules} needs around it. */
export interface DeviceTypeAlertRulesDeps {
  store: Pick<AlertRepository, 'syncTypeRules' | 'typeRuleOwners'>;
  /** Called after a tenant's rules changed: reloads them here and tells the other replicas. */
  rulesChanged(tenantId: string): Promise<void>;
  log: Logger;
}

/**
 * Keeps each device type's default alert rules (as the device directory
 * shows them) as alert rules owned by the type, while the directory holds a
 * device of the type: a type without devices (a deleted type has none) owns
 * none. Every replica does it; the store's upsert makes that harmless.
 * Syncs run one at a time, each with the newest rules of its type.
 */
export class DeviceTypeAlertRules {
  /** Each type's newest rules (`<tenant>.<type id>` → rules). */
  private readonly latest = new Map<string, { tenantId: string; deviceTypeId: string; rules: DefaultAlertRule[] }>();
  /** Types queued for a sync. */
  private readonly pending = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  private readonly retries = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly deps: DeviceTypeAlertRulesDeps) {}

  /** Takes a type's rules as the directory shows them; they are stored soon after. */
  seen(tenantId: string, deviceTypeId: string, rules: DefaultAlertRule[]): void {
    const key = `${tenantId}.${deviceTypeId}`;
    this.latest.set(key, { tenantId, deviceTypeId, rules });
    this.enqueue(key);
  }

  private enqueue(key: string): void {
    if (this.pending.has(key)) return;
    this.pending.add(key);
    this.chain = this.chain.then(() => this.sync(key));
  }

  /**
   * Drops the rules of every type that owns rules in the store but has no
   * device now (`hasDevices` false): a type deleted, or whose last device
   * left, while no replica was watching. Run once the directory is loaded.
   */
  async dropOrphans(hasDevices: (tenantId: string, deviceTypeId: string) => boolean): Promise<void> {
    for (const { tenantId, deviceTypeId } of await this.deps.store.typeRuleOwners()) {
      if (!hasDevices(tenantId, deviceTypeId)) this.seen(tenantId, deviceTypeId, []);
    }
  }

  /** Waits until every type seen so far is synced (or failed and scheduled again). */
  async idle(): Promise<void> {
    await this.chain;
  }

  /** Cancels scheduled retries. */
  stop(): void {
    this.stopped = true;
    for (const timer of this.retries) clearTimeout(timer);
  }

  private async sync(key: string): Promise<void> {
    this.pending.delete(key);
    const job = this.latest.get(key);
    if (!job) return;
    const { tenantId, deviceTypeId } = job;
    const rules: AlertRule[] = [];
    for (const r of job.rules) {
      const rule = typeAlertRule(tenantId, deviceTypeId, r);
      const violations = ruleViolations(rule, 'default_alert_rule');
      // The device service refuses what this refuses (alertConditionViolations, shared); a rule stored before it did is logged, not applied.
      if (violations.length > 0) this.deps.log.warn({ tenantId, deviceTypeId, rule: r.name, violations }, 'ignoring an invalid default alert rule of a device type');
      else if (!rules.some((x) => x.name === rule.name)) rules.push(rule);
    }
    try {
      if (await this.deps.store.syncTypeRules(tenantId, deviceTypeId, rules)) await this.deps.rulesChanged(tenantId);
    } catch (err) {
      this.deps.log.warn({ tenantId, deviceTypeId, err: (err as Error).message }, 'storing the default alert rules of a device type failed; trying again');
      if (this.stopped) return;
      const timer = setTimeout(() => {
        this.retries.delete(timer);
        this.enqueue(key);
      }, RETRY_MS);
      timer.unref();
      this.retries.add(timer);
    }
  }
}
