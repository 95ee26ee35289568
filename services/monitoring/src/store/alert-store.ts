import { Alert, AlertNotification, AlertRule, AlertState, Comparison, Severity } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import { durationToMs, msToDuration, Pool } from '@iot-mesh/runtime';

/** How a rule's condition is stored (JSON column). */
type StoredCondition =
  | { threshold: { comparison: Comparison; threshold: number; hysteresis: number; durationMs: number } }
  | { noData: { timeoutMs: number } };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `id` can be a rule or alert id (anything else is simply not found). */
export function isId(id: string): boolean {
  return UUID.test(id);
}

/** How a rule's notification settings are stored (JSON column `notification`). */
interface StoredNotification {
  channelIds?: string[];
  repeatMs?: number;
  quietHours?: { start: string; end: string; timeZone: string };
}

function storedNotification(n: AlertNotification | undefined): StoredNotification {
  if (!n) return {};
  return { channelIds: n.channelIds, repeatMs: durationToMs(n.repeatInterval) ?? 0, quietHours: n.quietHours };
}

function notificationOf(n: StoredNotification | undefined): AlertNotification | undefined {
  if (!n?.channelIds?.length) return undefined;
  return { channelIds: n.channelIds, repeatInterval: n.repeatMs ? msToDuration(n.repeatMs) : undefined, quietHours: n.quietHours };
}

function conditionOf(rule: AlertRule): StoredCondition {
  if (rule.threshold) {
    const t = rule.threshold;
    return { threshold: { comparison: t.comparison, threshold: t.threshold, hysteresis: t.hysteresis, durationMs: durationToMs(t.duration) ?? 0 } };
  }
  return { noData: { timeoutMs: durationToMs(rule.noData?.timeout) ?? 0 } };
}

function ruleOf(r: any): AlertRule {
  const c = r.condition as StoredCondition;
  return {
    id: r.id,
    tenantId: r.tenant_id,
    name: r.name,
    metric: r.metric,
    deviceIds: r.device_ids,
    labels: r.labels,
    groupIds: r.group_ids ?? [],
    threshold:
      'threshold' in c
        ? { comparison: c.threshold.comparison, threshold: c.threshold.threshold, hysteresis: c.threshold.hysteresis, duration: msToDuration(c.threshold.durationMs) }
        : undefined,
    noData: 'noData' in c ? { timeout: msToDuration(c.noData.timeoutMs) } : undefined,
    severity: r.severity,
    enabled: r.enabled,
    createTime: r.create_time,
    updateTime: r.update_time,
    notification: notificationOf(r.notification),
    deviceTypeId: r.device_type_id ?? '',
  };
}

function alertOf(r: any): Alert {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    ruleId: r.rule_id,
    deviceId: r.device_id,
    metric: r.metric,
    state: r.state,
    severity: r.severity,
    value: r.value ?? 0,
    message: r.message,
    raiseTime: r.raise_time,
    resolveTime: r.resolve_time ?? undefined,
    acknowledgeTime: r.acknowledge_time ?? undefined,
    acknowledgedBy: r.acknowledged_by ?? '',
  };
}

/** Filters of {@link AlertRepository.listAlerts}. */
export interface AlertFilter {
  state?: AlertState;
  deviceId?: string;
  unacknowledgedOnly?: boolean;
}

/** Alert rules and alerts; every query but the evaluator's is scoped to one tenant. */
export interface AlertRepository {
  /** Stores a new rule (id and times assigned here). */
  createRule(tenantId: string, rule: AlertRule): Promise<AlertRule>;
  /** The rule, or undefined when the tenant has none with this id. */
  getRule(tenantId: string, id: string): Promise<AlertRule | undefined>;
  /** Rules oldest first, after the keyset position `after` ([createTime ISO, id]). */
  listRules(tenantId: string, limit: number, after?: [string, string]): Promise<AlertRule[]>;
  /** Enabled rules of every tenant (or one), for the evaluator. */
  enabledRules(tenantId?: string): Promise<AlertRule[]>;
  /** Replaces a rule's fields; undefined when the tenant has no such rule. */
  replaceRule(tenantId: string, rule: AlertRule): Promise<AlertRule | undefined>;
  /** Deletes a rule; false when the tenant has no such rule. */
  deleteRule(tenantId: string, id: string): Promise<boolean>;
  /**
   * Makes the rules owned by a device type equal to `rules` (matched by
   * name: inserted, changed, the rest deleted); idempotent, and safe when
   * several replicas do it at once. True when any row changed.
   */
  syncTypeRules(tenantId: string, deviceTypeId: string, rules: AlertRule[]): Promise<boolean>;
  /** Every device type (of every tenant) that owns alert rules. */
  typeRuleOwners(): Promise<{ tenantId: string; deviceTypeId: string }[]>;
  /** Raises an alert unless one is already open for the rule and device; the new alert, or undefined. */
  raise(rule: AlertRule, deviceId: string, value: number | undefined, message: string, time: Date): Promise<Alert | undefined>;
  /** Resolves the open alert of a rule and device; the resolved alert, or undefined when none was open. */
  resolve(ruleId: string, deviceId: string, time: Date): Promise<Alert | undefined>;
  /** Open alerts of every tenant, to restore evaluator state. */
  openAlerts(): Promise<Alert[]>;
  /** Newest first, after keyset position `after` ([raiseTime ISO, id]). */
  listAlerts(tenantId: string, filter: AlertFilter, limit: number, after?: [string, string]): Promise<Alert[]>;
  /** Acknowledges an alert once (`changed` false on a second call); undefined when the tenant has no such alert. */
  acknowledge(tenantId: string, id: string, by: string): Promise<{ alert: Alert; changed: boolean } | undefined>;
  /** One alert of the tenant, or undefined. */
  getAlert(tenantId: string, id: string): Promise<Alert | undefined>;
  /**
   * Takes the open alerts whose rule repeats notifications and whose last
   * notification is at least a repeat interval before `now`, marking them
   * notified at `now` (so of several replicas only one takes each).
   */
  takeRepeatsDue(now: Date): Promise<Alert[]>;
}

/** Alert rules and alerts in PostgreSQL (tables `alert_rules`, `alerts`). */
export class PostgresAlertStore implements AlertRepository {
  constructor(private readonly pool: Pool) {}

  async createRule(tenantId: string, rule: AlertRule): Promise<AlertRule> {
    const now = new Date();
    const { rows } = await this.pool.query(
      `INSERT INTO alert_rules (tenant_id, name, metric, device_ids, labels, condition, severity, enabled, create_time, update_time, notification, group_ids)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11) RETURNING *`,
      [tenantId, rule.name, rule.metric, rule.deviceIds, rule.labels, conditionOf(rule), rule.severity, rule.enabled, now, storedNotification(rule.notification), rule.groupIds],
    );
    return ruleOf(rows[0]);
  }

  async getRule(tenantId: string, id: string): Promise<AlertRule | undefined> {
    if (!isId(id)) return undefined;
    const { rows } = await this.pool.query('SELECT * FROM alert_rules WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return rows[0] ? ruleOf(rows[0]) : undefined;
  }

  /** Rules oldest first, after the keyset position `after` ([createTime ISO, id]). */
  async listRules(tenantId: string, limit: number, after?: [string, string]): Promise<AlertRule[]> {
    const { rows } = await this.pool.query(
      `SELECT * FROM alert_rules WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (create_time, id) > ($2, $3::uuid))
        ORDER BY create_time, id LIMIT $4`,
      [tenantId, after?.[0] ?? null, after?.[1] ?? '00000000-0000-0000-0000-000000000000', limit],
    );
    return rows.map(ruleOf);
  }

  /** Enabled rules of every tenant (or one), for the evaluator. */
  async enabledRules(tenantId?: string): Promise<AlertRule[]> {
    const { rows } = await this.pool.query('SELECT * FROM alert_rules WHERE enabled AND ($1::text IS NULL OR tenant_id = $1)', [tenantId ?? null]);
    return rows.map(ruleOf);
  }

  async replaceRule(tenantId: string, rule: AlertRule): Promise<AlertRule | undefined> {
    if (!isId(rule.id)) return undefined;
    const { rows } = await this.pool.query(
      `UPDATE alert_rules SET name = $3, metric = $4, device_ids = $5, labels = $6, condition = $7, severity = $8, enabled = $9, update_time = $10, notification = $11, group_ids = $12
        WHERE tenant_id = $1 AND id = $2 RETURNING *`,
      [tenantId, rule.id, rule.name, rule.metric, rule.deviceIds, rule.labels, conditionOf(rule), rule.severity, rule.enabled, new Date(), storedNotification(rule.notification), rule.groupIds],
    );
    return rows[0] ? ruleOf(rows[0]) : undefined;
  }

  async deleteRule(tenantId: string, id: string): Promise<boolean> {
    if (!isId(id)) return false;
    const { rowCount } = await this.pool.query('DELETE FROM alert_rules WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return (rowCount ?? 0) > 0;
  }

  async syncTypeRules(tenantId: string, deviceTypeId: string, rules: AlertRule[]): Promise<boolean> {
    const wanted = rules.map((r) => ({ name: r.name, metric: r.metric, condition: conditionOf(r), severity: r.severity }));
    // Rows already equal are left alone, so their update_time (a no-data rule's baseline) does not move.
    const upserted = await this.pool.query(
      `INSERT INTO alert_rules (tenant_id, device_type_id, name, metric, condition, severity, enabled)
       SELECT $1, $2, r.name, r.metric, r.condition, r.severity, true FROM jsonb_to_recordset($3::jsonb) AS r(name text, metric text, condition jsonb, severity integer)
       ON CONFLICT (tenant_id, device_type_id, name) WHERE device_type_id IS NOT NULL DO UPDATE
          SET metric = EXCLUDED.metric, condition = EXCLUDED.condition, severity = EXCLUDED.severity, update_time = now()
        WHERE (alert_rules.metric, alert_rules.condition, alert_rules.severity) IS DISTINCT FROM (EXCLUDED.metric, EXCLUDED.condition, EXCLUDED.severity)
       RETURNING id`,
      [tenantId, deviceTypeId, JSON.stringify(wanted)],
    );
    const deleted = await this.pool.query('DELETE FROM alert_rules WHERE tenant_id = $1 AND device_type_id = $2 AND NOT (name = ANY($3::text[]))', [
      tenantId,
      deviceTypeId,
      wanted.map((r) => r.name),
    ]);
    return (upserted.rowCount ?? 0) + (deleted.rowCount ?? 0) > 0;
  }

  async typeRuleOwners(): Promise<{ tenantId: string; deviceTypeId: string }[]> {
    const { rows } = await this.pool.query('SELECT DISTINCT tenant_id, device_type_id FROM alert_rules WHERE device_type_id IS NOT NULL');
    return rows.map((r) => ({ tenantId: r.tenant_id, deviceTypeId: r.device_type_id }));
  }

  /** Raises an alert unless one is already open for the rule and device; the new alert, or undefined. */
  async raise(rule: AlertRule, deviceId: string, value: number | undefined, message: string, time: Date): Promise<Alert | undefined> {
    const { rows } = await this.pool.query(
      `INSERT INTO alerts (tenant_id, rule_id, device_id, metric, state, severity, value, message, raise_time, last_notify_time)
       VALUES ($1, $2, $3, $4, ${AlertState.ALERT_STATE_RAISED}, $5, $6, $7, $8, now())
       ON CONFLICT (rule_id, device_id) WHERE state = ${AlertState.ALERT_STATE_RAISED} DO NOTHING RETURNING *`,
      [rule.tenantId, rule.id, deviceId, rule.metric, rule.severity || Severity.SEVERITY_WARNING, value ?? null, message, time],
    );
    return rows[0] ? alertOf(rows[0]) : undefined;
  }

  /** Resolves the open alert of a rule and device; the resolved alert, or undefined when none was open. */
  async resolve(ruleId: string, deviceId: string, time: Date): Promise<Alert | undefined> {
    const { rows } = await this.pool.query(
      `UPDATE alerts SET state = ${AlertState.ALERT_STATE_RESOLVED}, resolve_time = greatest($3::timestamptz, raise_time)
        WHERE rule_id = $1 AND device_id = $2 AND state = ${AlertState.ALERT_STATE_RAISED} RETURNING *`,
      [ruleId, deviceId, time],
    );
    return rows[0] ? alertOf(rows[0]) : undefined;
  }

  /** Open alerts of every tenant, to restore evaluator state. */
  async openAlerts(): Promise<Alert[]> {
    const { rows } = await this.pool.query(`SELECT * FROM alerts WHERE state = ${AlertState.ALERT_STATE_RAISED}`);
    return rows.map(alertOf);
  }

  /** Newest first, after keyset position `after` ([raiseTime ISO, id]). */
  async listAlerts(tenantId: string, filter: AlertFilter, limit: number, after?: [string, string]): Promise<Alert[]> {
    const { rows } = await this.pool.query(
      `SELECT * FROM alerts
        WHERE tenant_id = $1
          AND ($2::int IS NULL OR state = $2) AND ($3::text IS NULL OR device_id = $3) AND (NOT $4 OR acknowledge_time IS NULL)
          AND ($5::timestamptz IS NULL OR (raise_time, id) < ($5, $6::uuid))
        ORDER BY raise_time DESC, id DESC LIMIT $7`,
      [tenantId, filter.state || null, filter.deviceId || null, filter.unacknowledgedOnly ?? false, after?.[0] ?? null, after?.[1] ?? 'ffffffff-ffff-ffff-ffff-ffffffffffff', limit],
    );
    return rows.map(alertOf);
  }

  /**
   * Acknowledges an alert (once: a second call returns it unchanged with
   * `changed` false); undefined when the tenant has no such alert.
   */
  async acknowledge(tenantId: string, id: string, by: string): Promise<{ alert: Alert; changed: boolean } | undefined> {
    if (!isId(id)) return undefined;
    const { rows } = await this.pool.query(
      `UPDATE alerts SET acknowledge_time = $3, acknowledged_by = $4 WHERE tenant_id = $1 AND id = $2 AND acknowledge_time IS NULL RETURNING *`,
      [tenantId, id, new Date(), by],
    );
    if (rows[0]) return { alert: alertOf(rows[0]), changed: true };
    const existing = await this.pool.query('SELECT * FROM alerts WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return existing.rows[0] ? { alert: alertOf(existing.rows[0]), changed: false } : undefined;
  }

  async getAlert(tenantId: string, id: string): Promise<Alert | undefined> {
    if (!isId(id)) return undefined;
    const { rows } = await this.pool.query('SELECT * FROM alerts WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return rows[0] ? alertOf(rows[0]) : undefined;
  }

  async takeRepeatsDue(now: Date): Promise<Alert[]> {
    // Two replicas running this at once: the second re-checks each row after the first's update and skips it.
    const { rows } = await this.pool.query(
      `UPDATE alerts a SET last_notify_time = $1
         FROM alert_rules r
        WHERE a.rule_id = r.id AND a.state = ${AlertState.ALERT_STATE_RAISED} AND r.enabled
          AND coalesce((r.notification->>'repeatMs')::bigint, 0) > 0
          AND coalesce(a.last_notify_time, a.raise_time) + (r.notification->>'repeatMs')::bigint * interval '1 millisecond' <= $1
        RETURNING a.*`,
      [now],
    );
    return rows.map(alertOf);
  }
}
