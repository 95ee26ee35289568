import { DeliveryState, NotificationChannelServiceService, RuleServiceService } from '../../../../gen/ts/iot/monitoring/v1/rules';
import { callerTenant, decodePageToken, defineService, encodePageToken, errors, pageSize, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { NotificationChannels, channelViolations } from '../domain/rules-channels';
import { DRY_RUN_MAX_MESSAGES, dryRunRule } from '../domain/rules-dry-run';
import { Rules, ruleViolations } from '../domain/rules';
import type { KnownDevices } from '../domain/telemetry';
import type { RuleRepository } from '../store/rule-store';
import type { TelemetryStore } from '../store/telemetry-store';

const HOUR_MS = 3_600_000;

/** What the rule and channel handlers call. */
export interface RuleHandlerDeps {
  rules: Rules;
  channels: NotificationChannels;
  store: RuleRepository;
  /** For dry runs: recent points. */
  telemetry: TelemetryStore;
  devices: KnownDevices;
}

function token(next: [string, string] | undefined): string {
  return next ? encodePageToken(next) : '';
}

/** Keyset cursor of the next delivery page (newest first). */
export function deliveryToken<T extends { createTime?: Date; id: string }>(items: T[], limit: number): string {
  const last = items[limit - 1];
  return items.length > limit && last ? encodePageToken([last.createTime!.toISOString(), last.id]) : '';
}

/** RuleService: decode → validate → rules domain → encode, scoped to the caller's tenant. */
export function ruleService({ rules, store, telemetry, devices }: RuleHandlerDeps): ServiceRegistration {
  return defineService(RuleServiceService, {
    async createRule(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (!request.rule) v.add('rule', 'is required');
      else for (const f of ruleViolations(request.rule)) v.add(f.field, f.description);
      v.throwIfAny();
      const created = await rules.create(tenantId, request.rule!);
      if ('nameTaken' in created) throw errors.alreadyExists(`a rule named ${request.rule!.name} exists`);
      if ('unknownGroup' in created) throw errors.notFound('group', created.unknownGroup);
      return { rule: created };
    },

    async getRule(request, ctx) {
      const rule = await rules.get(callerTenant(ctx), request.id);
      if (!rule) throw errors.notFound('rule', request.id);
      return { rule };
    },

    async listRules(request, ctx) {
      const limit = pageSize(request.page?.pageSize);
      const after = decodePageToken(request.page?.pageToken) as [string, string] | undefined;
      const result = await rules.list(callerTenant(ctx), limit, after);
      return { rules: result.items, page: { nextPageToken: token(result.next) } };
    },

    async updateRule(request, ctx) {
      const v = new Violations();
      if (!request.rule) v.add('rule', 'is required');
      v.throwIfAny();
      const result = await rules.update(callerTenant(ctx), request.rule!);
      if ('notFound' in result) throw errors.notFound('rule', request.rule!.id);
      if ('violations' in result) throw errors.invalidArgument(result.violations);
      if ('unknownGroup' in result) throw errors.notFound('group', result.unknownGroup);
      return { rule: result.rule };
    },

    async deleteRule(request, ctx) {
      if (!(await rules.delete(callerTenant(ctx), request.id))) throw errors.notFound('rule', request.id);
      return {};
    },

    async dryRunRule(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      v.check(!!request.ruleId !== !!request.rule, 'rule_id', 'name a stored rule or give one in rule, not both');
      if (request.rule) for (const f of ruleViolations(request.rule)) v.add(f.field, f.description);
      v.check(request.maxMessages >= 0, 'max_messages', 'must not be negative');
      const end = request.range?.end ?? new Date();
      const start = request.range?.start ?? new Date(end.getTime() - HOUR_MS);
      v.check(start < end, 'range', 'start must be before end');
      v.throwIfAny();
      const rule = request.ruleId ? await rules.getWithSecrets(tenantId, request.ruleId) : { ...request.rule!, tenantId };
      if (!rule) throw errors.notFound('rule', request.ruleId);
      return dryRunRule(telemetry, devices, rule, start, end, Math.min(request.maxMessages || DRY_RUN_MAX_MESSAGES, DRY_RUN_MAX_MESSAGES));
    },

    async listRuleDeliveries(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      v.check(DeliveryState[request.state] !== undefined, 'state', 'is not a delivery state');
      v.throwIfAny();
      if (!(await rules.get(tenantId, request.ruleId))) throw errors.notFound('rule', request.ruleId);
      const limit = pageSize(request.page?.pageSize);
      const before = decodePageToken(request.page?.pageToken) as [string, string] | undefined;
      const items = await store.ruleDeliveries(tenantId, request.ruleId, request.state || undefined, limit + 1, before);
      return { deliveries: items.slice(0, limit), page: { nextPageToken: deliveryToken(items, limit) } };
    },
  });
}

/** NotificationChannelService: channel CRUD and the delivery log, scoped to the caller's tenant. */
export function notificationChannelService({ channels, store }: RuleHandlerDeps): ServiceRegistration {
  return defineService(NotificationChannelServiceService, {
    async createNotificationChannel(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (!request.channel) v.add('channel', 'is required');
      else for (const f of channelViolations(request.channel)) v.add(f.field, f.description);
      v.throwIfAny();
      return { channel: await channels.create(tenantId, request.channel!) };
    },

    async getNotificationChannel(request, ctx) {
      const channel = await channels.get(callerTenant(ctx), request.id);
      if (!channel) throw errors.notFound('notification channel', request.id);
      return { channel };
    },

    async listNotificationChannels(request, ctx) {
      const limit = pageSize(request.page?.pageSize);
      const after = decodePageToken(request.page?.pageToken) as [string, string] | undefined;
      const result = await channels.list(callerTenant(ctx), limit, after);
      return { channels: result.items, page: { nextPageToken: token(result.next) } };
    },

    async deleteNotificationChannel(request, ctx) {
      if (!(await channels.delete(callerTenant(ctx), request.id))) throw errors.notFound('notification channel', request.id);
      return {};
    },

    async listChannelDeliveries(request, ctx) {
      const tenantId = callerTenant(ctx);
      if (!(await channels.get(tenantId, request.channelId))) throw errors.notFound('notification channel', request.channelId);
      const limit = pageSize(request.page?.pageSize);
      const before = decodePageToken(request.page?.pageToken) as [string, string] | undefined;
      const items = await store.channelDeliveries(tenantId, request.channelId, limit + 1, before);
      return { deliveries: items.slice(0, limit), page: { nextPageToken: deliveryToken(items, limit) } };
    },
  });
}
