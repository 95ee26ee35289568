import type { NatsConnection } from 'nats';
import { Alert, AlertServiceService, AlertState } from '../../../../gen/ts/iot/monitoring/v1/alerts';
import {
  callerPrincipal,
  callerTenant,
  decodePageToken,
  defineService,
  encodePageToken,
  errors,
  isSubjectToken,
  pageSize,
  ServiceRegistration,
  Violations,
} from '@iot-mesh/runtime';
import { AlertRules, MUTABLE_RULE_FIELDS, ruleViolations, TYPE_OWNED_RULE } from '../domain/alerts';
import { subscribeAlertEvents } from '../events/alert-events';
import type { RuleRepository } from '../store/rule-store';
import { deliveryToken } from './rules';

/** Alerts a slow StreamAlerts client may fall behind by before the oldest are dropped. */
const STREAM_BUFFER = 1000;

/** What the AlertService handlers call. */
export interface AlertHandlerDeps {
  rules: AlertRules;
  /** For StreamAlerts: the tenant's alert events. */
  nc: NatsConnection;
  /** The delivery log (alert notifications are in it). */
  deliveries: Pick<RuleRepository, 'alertDeliveries'>;
}

/** The next-page token of a keyset cursor. */
function nextPageToken(next: [string, string] | undefined): string {
  return next ? encodePageToken(next) : '';
}

/** FAILED_PRECONDITION for a device type's default rule, which only the type changes. */
function typeOwned(ruleId: string, deviceTypeId: string) {
  return errors.failedPrecondition(`alert rule ${JSON.stringify(ruleId)} ${TYPE_OWNED_RULE.replace('%s', JSON.stringify(deviceTypeId))}`);
}

/** AlertService: decode → validate → alert domain → encode (rules CRUD, alerts list / acknowledge / stream), scoped to the caller's tenant. */
export function alertService({ rules, nc, deliveries }: AlertHandlerDeps): ServiceRegistration {
  return defineService(AlertServiceService, {
    async createAlertRule(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (!request.rule) v.add('rule', 'is required');
      else for (const f of ruleViolations(request.rule)) v.add(f.field, f.description);
      v.throwIfAny();
      const created = await rules.create(tenantId, request.rule!);
      if ('unknownGroup' in created) throw errors.notFound('group', created.unknownGroup);
      return { rule: created };
    },

    async getAlertRule(request, ctx) {
      const rule = await rules.get(callerTenant(ctx), request.id);
      if (!rule) throw errors.notFound('alert rule', request.id);
      return { rule };
    },

    async listAlertRules(request, ctx) {
      const limit = pageSize(request.page?.pageSize);
      const token = decodePageToken(request.page?.pageToken) as [string, string] | undefined;
      const result = await rules.list(callerTenant(ctx), limit, token);
      return { rules: result.items, page: { nextPageToken: nextPageToken(result.next) } };
    },

    async updateAlertRule(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (!request.rule) v.add('rule', 'is required');
      const paths = request.updateMask ?? [];
      paths.forEach((p, i) => v.check((MUTABLE_RULE_FIELDS as readonly string[]).includes(p), `update_mask.paths[${i}]`, `is not one of ${MUTABLE_RULE_FIELDS.join(', ')}`));
      v.throwIfAny();
      const result = await rules.update(tenantId, request.rule!, paths);
      if ('notFound' in result) throw errors.notFound('alert rule', request.rule!.id);
      if ('violations' in result) throw errors.invalidArgument(result.violations);
      if ('unknownGroup' in result) throw errors.notFound('group', result.unknownGroup);
      if ('typeOwned' in result) throw typeOwned(request.rule!.id, result.typeOwned);
      return { rule: result.rule };
    },

    async deleteAlertRule(request, ctx) {
      const result = await rules.delete(callerTenant(ctx), request.id);
      if (!result) throw errors.notFound('alert rule', request.id);
      if (typeof result === 'object') throw typeOwned(request.id, result.typeOwned);
      return {};
    },

    async listAlerts(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      v.check(AlertState[request.state] !== undefined, 'state', 'is not an alert state');
      if (request.deviceId) v.check(isSubjectToken(request.deviceId), 'device_id', 'is not a valid device id');
      v.throwIfAny();
      const limit = pageSize(request.page?.pageSize);
      const token = decodePageToken(request.page?.pageToken) as [string, string] | undefined;
      const filter = { state: request.state || undefined, deviceId: request.deviceId || undefined, unacknowledgedOnly: request.unacknowledgedOnly };
      const result = await rules.alerts(tenantId, filter, limit, token);
      return { alerts: result.items, page: { nextPageToken: nextPageToken(result.next) } };
    },

    async acknowledgeAlert(request, ctx) {
      const principal = callerPrincipal(ctx);
      const alert = await rules.acknowledge(principal.tenantId, request.id, principal.id);
      if (!alert) throw errors.notFound('alert', request.id);
      return { alert };
    },

    async listAlertDeliveries(request, ctx) {
      const tenantId = callerTenant(ctx);
      if (!(await rules.alert(tenantId, request.alertId))) throw errors.notFound('alert', request.alertId);
      const limit = pageSize(request.page?.pageSize);
      const before = decodePageToken(request.page?.pageToken) as [string, string] | undefined;
      const items = await deliveries.alertDeliveries(tenantId, request.alertId, limit + 1, before);
      return { deliveries: items.slice(0, limit), page: { nextPageToken: deliveryToken(items, limit) } };
    },

    async streamAlerts(_request, ctx, send) {
      const tenantId = callerTenant(ctx);
      const queue: Alert[] = [];
      let wake: (() => void) | undefined;
      const sub = subscribeAlertEvents(nc, tenantId, (alert) => {
        queue.push(alert);
        if (queue.length > STREAM_BUFFER) queue.shift();
        wake?.();
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
