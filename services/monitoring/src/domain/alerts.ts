import { Alert, AlertNotification, AlertRule, QuietHours, Severity } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import { alertConditionViolations, durationToMs, FieldViolation, isSubjectToken, METRIC_NAME } from '@iot-mesh/runtime';
import type { AlertFilter, AlertRepository } from '../store/alert-store';
import type { AlertChanges } from './alert-evaluation';
import { GROUP_ID, KnownDevices, MAX_GROUPS, unknownGroup } from './telemetry';

/** Fields an update mask may name. */
export const MUTABLE_RULE_FIELDS = ['name', 'metric', 'device_ids', 'labels', 'group_ids', 'threshold', 'no_data', 'severity', 'enabled', 'notification'] as const;

const WEEK_MS = 7 * 86_400_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CLOCK = /^([01]\d|2[0-3]):([0-5]\d)$/;
/** Most channels one alert rule notifies. */
const MAX_ALERT_CHANNELS = 10;

/** Minutes since local midnight of "HH:MM". */
function clockMinutes(hhmm: string): number {
  const m = CLOCK.exec(hhmm)!;
  return Number(m[1]) * 60 + Number(m[2]);
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** True when `now` falls inside the daily quiet window (in its time zone; start > end wraps midnight). */
export function inQuietHours(quiet: QuietHours | undefined, now: Date): boolean {
  if (!quiet || !CLOCK.test(quiet.start) || !CLOCK.test(quiet.end)) return false;
  const parts = new Intl.DateTimeFormat('en-GB', { timeZone: quiet.timeZone || 'UTC', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(now);
  const local = Number(parts.find((p) => p.type === 'hour')!.value) * 60 + Number(parts.find((p) => p.type === 'minute')!.value);
  const start = clockMinutes(quiet.start);
  const end = clockMinutes(quiet.end);
  return start < end ? local >= start && local < end : local >= start || local < end;
}

/** What is wrong with a rule's notification settings. */
function notificationViolations(n: AlertNotification, prefix: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  const check = (ok: boolean, field: string, description: string) => {
    if (!ok) out.push({ field: `${prefix}.${field}`, description });
  };
  check(n.channelIds.length > 0, 'channel_ids', 'needs at least one channel');
  check(n.channelIds.length <= MAX_ALERT_CHANNELS, 'channel_ids', `at most ${MAX_ALERT_CHANNELS} channels`);
  n.channelIds.forEach((id, i) => check(UUID.test(id), `channel_ids[${i}]`, 'is not a channel id'));
  if (n.repeatInterval) {
    const ms = durationToMs(n.repeatInterval) ?? 0;
    check(ms >= 1000 && ms <= WEEK_MS, 'repeat_interval', 'must be between 1 s and 7 days');
  }
  const q = n.quietHours;
  if (q) {
    check(CLOCK.test(q.start), 'quiet_hours.start', 'must be HH:MM (24 h)');
    check(CLOCK.test(q.end), 'quiet_hours.end', 'must be HH:MM (24 h)');
    check(q.start !== q.end, 'quiet_hours', 'start and end must differ');
    check(!q.timeZone || isTimeZone(q.timeZone), 'quiet_hours.time_zone', 'is not an IANA time zone');
  }
  return out;
}

/** What makes a rule invalid, as field violations under `prefix` (empty when it is valid). */
export function ruleViolations(rule: AlertRule, prefix = 'rule'): FieldViolation[] {
  const out: FieldViolation[] = [];
  const check = (ok: boolean, field: string, description: string) => {
    if (!ok) out.push({ field: `${prefix}.${field}`, description });
  };
  if (!rule.name) check(false, 'name', 'is required');
  else check(rule.name.length <= 200, 'name', 'must be at most 200 characters');
  if (!rule.metric) check(false, 'metric', 'is required');
  else check(METRIC_NAME.test(rule.metric), 'metric', 'is not a valid metric name');
  check(rule.deviceIds.length <= 1000, 'device_ids', 'at most 1000 devices');
  rule.deviceIds.forEach((d, i) => check(isSubjectToken(d), `device_ids[${i}]`, 'is not a valid device id'));
  check(Object.keys(rule.labels).length <= 20, 'labels', 'at most 20 labels');
  check(rule.groupIds.length <= MAX_GROUPS, 'group_ids', `at most ${MAX_GROUPS} groups`);
  rule.groupIds.forEach((g, i) => check(GROUP_ID.test(g), `group_ids[${i}]`, 'is not a group id'));
  check(rule.groupIds.length === 0 || rule.deviceIds.length === 0, 'group_ids', 'name devices or groups, not both');
  out.push(...alertConditionViolations(rule, prefix));
  if (rule.notification) out.push(...notificationViolations(rule.notification, `${prefix}.notification`));
  return out;
}

/** A rule as stored: severity defaulted, device ids without repeats. */
function normalise(rule: AlertRule): AlertRule {
  return { ...rule, severity: rule.severity || Severity.SEVERITY_WARNING, deviceIds: [...new Set(rule.deviceIds)] };
}

/**
 * The rule an update leaves: with no mask the incoming rule whole; with a
 * mask the existing rule with the named fields taken from the incoming one
 * (threshold and no_data replace each other).
 */
export function mergeRule(existing: AlertRule, incoming: AlertRule, paths: readonly string[]): AlertRule {
  if (paths.length === 0) return { ...incoming, id: existing.id, tenantId: existing.tenantId };
  let merged = { ...existing };
  const set = new Set(paths);
  if (set.has('name')) merged.name = incoming.name;
  if (set.has('metric')) merged.metric = incoming.metric;
  if (set.has('device_ids')) merged.deviceIds = incoming.deviceIds;
  if (set.has('labels')) merged.labels = incoming.labels;
  if (set.has('group_ids')) merged.groupIds = incoming.groupIds;
  if (set.has('severity')) merged.severity = incoming.severity;
  if (set.has('enabled')) merged.enabled = incoming.enabled;
  if (set.has('notification')) merged.notification = incoming.notification;
  if (set.has('threshold')) merged = { ...merged, threshold: incoming.threshold, noData: incoming.threshold ? undefined : merged.noData };
  if (set.has('no_data')) merged = { ...merged, noData: incoming.noData, threshold: incoming.noData ? undefined : merged.threshold };
  return merged;
}

/** What an update did: the stored rule, or why not. */
export type RuleUpdate = { rule: AlertRule } | { notFound: true } | { violations: FieldViolation[] } | { unknownGroup: string } | { typeOwned: string };

/** Why a device type's default rule is not changed through the alert rule API. */
export const TYPE_OWNED_RULE = "is a default alert rule of device type %s: change the device type's default alert rules instead";

/** A page of a keyset-paged list and the cursor of the next one. */
export interface Page<T> {
  items: T[];
  /** [time ISO, id] of the last item, when more follow. */
  next?: [string, string];
}

function page<T>(rows: T[], limit: number, cursor: (last: T) => [string, string]): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next: rows.length > limit && last ? cursor(last) : undefined };
}

/** What the alert domain needs around it. */
export interface AlertDomainDeps {
  store: AlertRepository;
  /** Where alert changes go (published as alert events). */
  changes: AlertChanges;
  /** Where a rule's group ids are checked (the group directory). */
  groups: Pick<KnownDevices, 'group'>;
  /** Called after a tenant's rules changed: reloads them here and tells the other replicas. */
  rulesChanged(tenantId: string): Promise<void>;
}

/** Alert rules (create, read, update, delete) and alerts (list, acknowledge) of one tenant at a time. */
export class AlertRules {
  constructor(private readonly deps: AlertDomainDeps) {}

  /** Stores a valid rule (see {@link ruleViolations}) and puts it to work. */
  async create(tenantId: string, rule: AlertRule): Promise<AlertRule | { unknownGroup: string }> {
    const group = unknownGroup(this.deps.groups, tenantId, rule.groupIds);
    if (group) return { unknownGroup: group };
    const created = await this.deps.store.createRule(tenantId, normalise(rule));
    await this.deps.rulesChanged(tenantId);
    return created;
  }

  /** The rule, or undefined. */
  get(tenantId: string, id: string): Promise<AlertRule | undefined> {
    return this.deps.store.getRule(tenantId, id);
  }

  /** Rules oldest first. */
  async list(tenantId: string, limit: number, after?: [string, string]): Promise<Page<AlertRule>> {
    const rows = await this.deps.store.listRules(tenantId, limit + 1, after);
    return page(rows, limit, (r) => [r.createTime!.toISOString(), r.id]);
  }

  /** Applies an update (mask paths already checked against {@link MUTABLE_RULE_FIELDS}); the merged rule must be valid. */
  async update(tenantId: string, incoming: AlertRule, paths: readonly string[]): Promise<RuleUpdate> {
    const existing = await this.deps.store.getRule(tenantId, incoming.id);
    if (!existing) return { notFound: true };
    if (existing.deviceTypeId) return { typeOwned: existing.deviceTypeId };
    const merged = mergeRule(existing, { ...incoming, tenantId }, paths);
    const violations = ruleViolations(merged);
    if (violations.length > 0) return { violations };
    const group = unknownGroup(this.deps.groups, tenantId, merged.groupIds);
    if (group) return { unknownGroup: group };
    const rule = await this.deps.store.replaceRule(tenantId, normalise({ ...merged, deviceTypeId: '' }));
    if (!rule) return { notFound: true };
    await this.deps.rulesChanged(tenantId);
    return { rule };
  }

  /** Deletes a rule; false when there was none, the owning type's id when it is a type's default rule (kept). */
  async delete(tenantId: string, id: string): Promise<boolean | { typeOwned: string }> {
    const existing = await this.deps.store.getRule(tenantId, id);
    if (existing?.deviceTypeId) return { typeOwned: existing.deviceTypeId };
    if (!(await this.deps.store.deleteRule(tenantId, id))) return false;
    await this.deps.rulesChanged(tenantId);
    return true;
  }

  /** Alerts newest first. */
  async alerts(tenantId: string, filter: AlertFilter, limit: number, after?: [string, string]): Promise<Page<Alert>> {
    const rows = await this.deps.store.listAlerts(tenantId, filter, limit + 1, after);
    return page(rows, limit, (a) => [a.raiseTime!.toISOString(), a.id]);
  }

  /** One alert, or undefined. */
  alert(tenantId: string, id: string): Promise<Alert | undefined> {
    return this.deps.store.getAlert(tenantId, id);
  }

  /** Acknowledges an alert once, announcing the first acknowledgement; undefined when there is none. */
  async acknowledge(tenantId: string, id: string, by: string): Promise<Alert | undefined> {
    const result = await this.deps.store.acknowledge(tenantId, id, by);
    if (!result) return undefined;
    if (result.changed) this.deps.changes('acknowledged', result.alert);
    return result.alert;
  }
}
