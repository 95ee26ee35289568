import type { NatsConnection } from 'nats';
import { Alert, AlertRule, AlertServiceService, AlertState, Comparison, Severity } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import {
  callerPrincipal,
  callerTenant,
  decodePageToken,
  defineService,
  encodePageToken,
  errors,
  eventSubject,
  isSubjectToken,
  pageSize,
  ServiceRegistration,
  Violations,
} from '@iot-mesh/runtime';
import { METRIC_NAME } from '../ingest/decode';
import { AlertStore } from './alert-store';
import { publishAlertEvent, rulesChangedSubject } from './evaluator';

const MUTABLE = ['name', 'metric', 'device_ids', 'labels', 'threshold', 'no_data', 'severity', 'enabled'] as const;
const STREAM_BUFFER = 1000;

function durationMs(d: { seconds: bigint; nanos: number } | undefined): number | undefined {
  return d ? Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6) : undefined;
}

/** Field violations of a rule as it would be stored. */
function validateRule(rule: AlertRule, v: Violations, prefix = 'rule'): void {
  if (v.required(rule.name, `${prefix}.name`)) v.maxLength(rule.name, 200, `${prefix}.name`);
  if (v.required(rule.metric, `${prefix}.metric`)) v.matches(rule.metric, METRIC_NAME, `${prefix}.metric`, 'is not a valid metric name');
  v.check(rule.deviceIds.length <= 1000, `${prefix}.device_ids`, 'at most 1000 devices');
  rule.deviceIds.forEach((d, i) => v.check(isSubjectToken(d), `${prefix}.device_ids[${i}]`, 'is not a valid device id'));
  v.check(Object.keys(rule.labels).length <= 20, `${prefix}.labels`, 'at most 20 labels');
  if (!rule.threshold && !rule.noData) v.add(`${prefix}.condition`, 'set threshold or no_data');
  if (rule.threshold && rule.noData) v.add(`${prefix}.condition`, 'set only one of threshold and no_data');
  if (rule.threshold) {
    const t = rule.threshold;
    v.check(t.comparison !== Comparison.COMPARISON_UNSPECIFIED && Comparison[t.comparison] !== undefined, `${prefix}.threshold.comparison`, 'is required');
    v.check(Number.isFinite(t.threshold), `${prefix}.threshold.threshold`, 'must be a finite number');
    v.check(Number.isFinite(t.hysteresis) && t.hysteresis >= 0, `${prefix}.threshold.hysteresis`, 'must be a non-negative number');
    const d = durationMs(t.duration) ?? 0;
    v.check(d >= 0 && d <= 7 * 86_400_000, `${prefix}.threshold.duration`, 'must be between 0 and 7 days');
  }
  if (rule.noData) {
    const d = durationMs(rule.noData.timeout) ?? 0;
    v.check(d >= 1000 && d <= 7 * 86_400_000, `${prefix}.no_data.timeout`, 'must be between 1 s and 7 days');
  }
  v.check(Severity[rule.severity] !== undefined, `${prefix}.severity`, 'is not a severity');
}

function normalise(rule: AlertRule): AlertRule {
  return { ...rule, severity: rule.severity || Severity.SEVERITY_WARNING, deviceIds: [...new Set(rule.deviceIds)] };
}

export interface AlertHandlerDeps {
  store: AlertStore;
  nc: NatsConnection;
  /** Reloads rules in this replica at once (others hear the NATS notice). */
  reload(tenantId: string): Promise<void>;
}

/** AlertService: rules CRUD, alerts list / acknowledge / stream, scoped to the caller's tenant. */
export function alertService({ store, nc, reload }: AlertHandlerDeps): ServiceRegistration {
  const changed = async (tenantId: string) => {
    await reload(tenantId);
    nc.publish(rulesChangedSubject(tenantId));
  };
  return defineService(AlertServiceService, {
    async createAlertRule(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (!request.rule) v.add('rule', 'is required');
      else validateRule(request.rule, v);
      v.throwIfAny();
      const rule = await store.createRule(tenantId, normalise(request.rule!));
      await changed(tenantId);
      return { rule };
    },

    async getAlertRule(request, ctx) {
      const rule = await store.getRule(callerTenant(ctx), request.id);
      if (!rule) throw errors.notFound('alert rule', request.id);
      return { rule };
    },

    async listAlertRules(request, ctx) {
      const tenantId = callerTenant(ctx);
      const limit = pageSize(request.page?.pageSize);
      const token = decodePageToken(request.page?.pageToken);
      const rules = await store.listRules(tenantId, limit + 1, token as [string, string] | undefined);
      const page = rules.slice(0, limit);
      const last = page[page.length - 1];
      return { rules: page, page: { nextPageToken: rules.length > limit && last ? encodePageToken([last.createTime!.toISOString(), last.id]) : '' } };
    },

    async updateAlertRule(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (!request.rule) v.add('rule', 'is required');
      const paths = request.updateMask ?? [];
      paths.forEach((p, i) => v.check((MUTABLE as readonly string[]).includes(p), `update_mask.paths[${i}]`, `is not one of ${MUTABLE.join(', ')}`));
      v.throwIfAny();
      const existing = await store.getRule(tenantId, request.rule!.id);
      if (!existing) throw errors.notFound('alert rule', request.rule!.id);
      const incoming = request.rule!;
      let merged: AlertRule;
      if (paths.length === 0) {
        merged = { ...incoming, id: existing.id, tenantId };
      } else {
        merged = { ...existing };
        const set = new Set(paths);
        if (set.has('name')) merged.name = incoming.name;
        if (set.has('metric')) merged.metric = incoming.metric;
        if (set.has('device_ids')) merged.deviceIds = incoming.deviceIds;
        if (set.has('labels')) merged.labels = incoming.labels;
        if (set.has('severity')) merged.severity = incoming.severity;
        if (set.has('enabled')) merged.enabled = incoming.enabled;
        if (set.has('threshold')) merged = { ...merged, threshold: incoming.threshold, noData: incoming.threshold ? undefined : merged.noData };
        if (set.has('no_data')) merged = { ...merged, noData: incoming.noData, threshold: incoming.noData ? undefined : merged.threshold };
      }
      const check = new Violations();
      validateRule(merged, check);
      check.throwIfAny();
      const rule = await store.replaceRule(tenantId, normalise(merged));
      if (!rule) throw errors.notFound('alert rule', incoming.id);
      await changed(tenantId);
      return { rule };
    },

    async deleteAlertRule(request, ctx) {
      const tenantId = callerTenant(ctx);
      if (!(await store.deleteRule(tenantId, request.id))) throw errors.notFound('alert rule', request.id);
      await changed(tenantId);
      return {};
    },

    async listAlerts(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      v.check(AlertState[request.state] !== undefined, 'state', 'is not an alert state');
      if (request.deviceId) v.check(isSubjectToken(request.deviceId), 'device_id', 'is not a valid device id');
      v.throwIfAny();
      const limit = pageSize(request.page?.pageSize);
      const token = decodePageToken(request.page?.pageToken);
      const alerts = await store.listAlerts(
        tenantId,
        { state: request.state || undefined, deviceId: request.deviceId || undefined, unacknowledgedOnly: request.unacknowledgedOnly },
        limit + 1,
        token as [string, string] | undefined,
      );
      const page = alerts.slice(0, limit);
      const last = page[page.length - 1];
      return { alerts: page, page: { nextPageToken: alerts.length > limit && last ? encodePageToken([last.raiseTime!.toISOString(), last.id]) : '' } };
    },

    async acknowledgeAlert(request, ctx) {
      const principal = callerPrincipal(ctx);
      const result = await store.acknowledge(principal.tenantId, request.id, principal.id);
      if (!result) throw errors.notFound('alert', request.id);
      if (result.changed) publishAlertEvent(nc, 'acknowledged', result.alert);
      return { alert: result.alert };
    },

    async streamAlerts(_request, ctx, send) {
      const tenantId = callerTenant(ctx);
      const queue: Alert[] = [];
      let wake: (() => void) | undefined;
      const sub = nc.subscribe(`${eventSubject(tenantId, 'alert')}.*`, {
        callback: (err, msg) => {
          if (err) return;
          try {
            queue.push(Alert.decode(msg.data));
            if (queue.length > STREAM_BUFFER) queue.shift();
            wake?.();
          } catch {
            // not an alert event: ignore
          }
        },
      });
      const onAbort = () => wake?.();
      ctx.signal.addEventListener('abort', onAbort);
      try {
        await nc.flush();
        while (!ctx.signal.aborted) {
          if (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          while (queue.length > 0 && !ctx.signal.aborted) await send({ alert: queue.shift()! });
        }
      } finally {
        ctx.signal.removeEventListener('abort', onAbort);
        sub.unsubscribe();
      }
    },
  });
}
