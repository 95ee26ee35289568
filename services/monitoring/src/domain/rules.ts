import type { RetryPolicy, Rule, RuleAction, RuleSource } from '../../../../gen/ts/iot/monitoring/v1/rules';
import { FieldViolation, isSubjectToken, METRIC_NAME } from '@iot-mesh/runtime';
import type { RuleRepository } from '../store/rule-store';
import type { PointRow, SampleValue } from '../store/telemetry-store';
import { newWebhookSecret, retryViolations, WEBHOOK_SECRET } from './rules-channels';
import { CompiledExpression, compileExpression, celTypeName, RuleInput, sampleOf } from './rules-cel';
import { GROUP_ID, inAnyGroup, KnownDevice, KnownDevices, labelsMatch, MAX_GROUPS, unknownGroup } from './telemetry';

/** Most actions one rule has. */
export const MAX_RULE_ACTIONS = 10;
/** Longest CEL expression accepted. */
const MAX_EXPRESSION_LENGTH = 4096;
/** The kind of an action, as the API and metrics name it. */
export type ActionKind = 'derived_metric' | 'republish' | 'webhook' | 'notify';

/** The kind of an action; undefined when it sets none. */
export function actionKind(action: RuleAction): ActionKind | undefined {
  if (action.derivedMetric) return 'derived_metric';
  if (action.republish) return 'republish';
  if (action.webhook) return 'webhook';
  if (action.notify) return 'notify';
  return undefined;
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

function sourceOf(rule: Rule): RuleSource {
  return rule.source ?? { deviceTypes: [], deviceIds: [], labels: {}, metrics: [], groupIds: [] };
}

/**
 * What is wrong with a rule definition, field by field. Includes the loop
 * refusal: a derived metric must not be one its own rule listens to (and a
 * rule listening to every metric listens to it too).
 */
export function ruleViolations(rule: Rule): FieldViolation[] {
  const out: FieldViolation[] = [];
  const add = (field: string, description: string) => out.push({ field, description });
  if (!isSubjectToken(rule.name)) add('rule.name', 'must be 1–64 lower-case letters, digits, _ or -, starting with a letter or digit');
  const source = sourceOf(rule);
  source.deviceIds.forEach((id, i) => isSubjectToken(id) || add(`rule.source.device_ids[${i}]`, 'is not a valid device id'));
  source.metrics.forEach((m, i) => METRIC_NAME.test(m) || add(`rule.source.metrics[${i}]`, 'is not a valid metric name'));
  if (source.groupIds.length > MAX_GROUPS) add('rule.source.group_ids', `at most ${MAX_GROUPS} groups`);
  source.groupIds.forEach((g, i) => GROUP_ID.test(g) || add(`rule.source.group_ids[${i}]`, 'is not a group id'));
  if (!rule.condition) add('rule.condition', 'is required (a CEL expression; `true` matches every message)');
  else if (rule.condition.length > MAX_EXPRESSION_LENGTH) add('rule.condition', `must be at most ${MAX_EXPRESSION_LENGTH} characters`);
  else {
    const compiled = compileExpression(rule.condition);
    if ('parseError' in compiled) add('rule.condition', `is not CEL: ${compiled.parseError}`);
  }
  if (rule.actions.length === 0) add('rule.actions', 'needs at least one action');
  if (rule.actions.length > MAX_RULE_ACTIONS) add('rule.actions', `must have at most ${MAX_RULE_ACTIONS} actions`);
  rule.actions.forEach((action, i) => {
    const at = `rule.actions[${i}]`;
    const kinds = [action.derivedMetric, action.republish, action.webhook, action.notify].filter(Boolean).length;
    if (kinds !== 1) return add(at, 'must set exactly one of derived_metric, republish, webhook, notify');
    if (action.derivedMetric) {
      const { metric, expression } = action.derivedMetric;
      if (!METRIC_NAME.test(metric)) add(`${at}.derived_metric.metric`, 'is not a valid metric name');
      else if (source.metrics.length === 0) add(`${at}.derived_metric.metric`, 'would loop: the rule listens to every metric, so it would see its own derived points; name the source metrics');
      else if (source.metrics.includes(metric)) add(`${at}.derived_metric.metric`, `would loop: ${metric} is one of the rule's own source metrics`);
      if (!expression) add(`${at}.derived_metric.expression`, 'is required');
      else if (expression.length > MAX_EXPRESSION_LENGTH) add(`${at}.derived_metric.expression`, `must be at most ${MAX_EXPRESSION_LENGTH} characters`);
      else {
        const compiled = compileExpression(expression);
        if ('parseError' in compiled) add(`${at}.derived_metric.expression`, `is not CEL: ${compiled.parseError}`);
      }
    }
    if (action.republish && !isSubjectToken(action.republish.topic)) add(`${at}.republish.topic`, 'must be one subject token (lower-case letters, digits, _ or -)');
    if (action.webhook) {
      if (!isHttpUrl(action.webhook.url)) add(`${at}.webhook.url`, 'must be an http or https URL');
      if (action.webhook.secret && !WEBHOOK_SECRET.test(action.webhook.secret)) add(`${at}.webhook.secret`, 'must be whsec_ followed by a base64 key of at least 16 bytes');
      out.push(...retryViolations(action.webhook.retry, `${at}.webhook.retry`));
    }
    if (action.notify && !/^[0-9a-f-]{36}$/i.test(action.notify.channelId)) add(`${at}.notify.channel_id`, 'must be a notification channel id');
  });
  return out;
}

/** What one action would do for one message (the queue's job, or a dry run's plan). */
export type PlannedAction =
  | { kind: 'derived_metric'; index: number; metric: string; value?: SampleValue; error?: string }
  | { kind: 'republish'; index: number; topic: string }
  | { kind: 'webhook'; index: number; url: string; secret: string; retry?: RetryPolicy }
  | { kind: 'notify'; index: number; channelId: string; title: string };

/** A rule's verdict on one message. */
export interface RuleEvaluation {
  matched: boolean;
  /** The condition could not be evaluated (counted, and the message does not match). */
  error?: string;
  actions: PlannedAction[];
}

/** A telemetry message as rules see it. */
export interface RuleMessage {
  tenantId: string;
  deviceId: string;
  messageId: string;
  rows: PointRow[];
  /** Derivation depth (0: a device's own message). */
  depth: number;
}

/** A rule ready to evaluate: its expressions compiled once. */
export class CompiledRule {
  private readonly condition: CompiledExpression;
  private readonly derived = new Map<number, CompiledExpression>();

  constructor(readonly rule: Rule) {
    const condition = compileExpression(rule.condition);
    // Stored rules were validated; an unparsable one (edited in the database) never matches.
    this.condition = 'parseError' in condition ? () => ({ error: condition.parseError }) : condition;
    rule.actions.forEach((action, i) => {
      if (!action.derivedMetric) return;
      const compiled = compileExpression(action.derivedMetric.expression);
      this.derived.set(i, 'parseError' in compiled ? () => ({ error: compiled.parseError }) : compiled);
    });
  }

  /** Does the rule's source select this device and message (its groups as the directory has them now)? */
  selects(device: KnownDevice | undefined, message: RuleMessage, groups: Pick<KnownDevices, 'group'>): boolean {
    const source = sourceOf(this.rule);
    if (source.groupIds.length > 0 && !inAnyGroup(groups, device, source.groupIds)) return false;
    if (source.deviceIds.length > 0 && !source.deviceIds.includes(message.deviceId)) return false;
    if (source.deviceTypes.length > 0 && !source.deviceTypes.includes(device?.type ?? '')) return false;
    if (Object.keys(source.labels).length > 0 && !labelsMatch(source.labels, device?.labels)) return false;
    if (source.metrics.length > 0 && !message.rows.some((r) => source.metrics.includes(r.metric))) return false;
    return true;
  }

  /** Evaluates the condition and, when it holds, plans every action. */
  evaluate(device: KnownDevice | undefined, message: RuleMessage): RuleEvaluation {
    const points = new Map<string, SampleValue>();
    for (const row of message.rows) points.set(row.metric, row.value);
    const input: RuleInput = { points, device: { id: message.deviceId, type: device?.type ?? '', labels: device?.labels ?? {} }, depth: message.depth };
    const verdict = this.condition(input);
    if ('error' in verdict) return { matched: false, error: verdict.error, actions: [] };
    if (verdict.value !== true) {
      return verdict.value === false ? { matched: false, actions: [] } : { matched: false, error: `condition gave a ${celTypeName(verdict.value)}, not a bool`, actions: [] };
    }
    const actions = this.rule.actions.map((action, index): PlannedAction => {
      if (action.derivedMetric) {
        const result = this.derived.get(index)!(input);
        if ('error' in result) return { kind: 'derived_metric', index, metric: action.derivedMetric.metric, error: result.error };
        const value = sampleOf(result.value);
        if (!value) return { kind: 'derived_metric', index, metric: action.derivedMetric.metric, error: `expression gave a ${celTypeName(result.value)} (or a non-finite number), not a number, bool or string` };
        return { kind: 'derived_metric', index, metric: action.derivedMetric.metric, value };
      }
      if (action.republish) return { kind: 'republish', index, topic: action.republish.topic };
      if (action.webhook) return { kind: 'webhook', index, url: action.webhook.url, secret: action.webhook.secret, retry: action.webhook.retry };
      return { kind: 'notify', index, channelId: action.notify!.channelId, title: action.notify!.title || this.rule.name };
    });
    return { matched: true, actions };
  }
}

/** Hides secrets of a rule for reads (they are shown once, when set). */
export function withoutSecrets(rule: Rule): Rule {
  return { ...rule, actions: rule.actions.map((a) => (a.webhook ? { ...a, webhook: { ...a.webhook, secret: '' } } : a)) };
}

/** What the Rules domain needs besides its repository. */
export interface RulesDeps {
  store: RuleRepository;
  /** Where group ids of a rule's source are checked (the group directory). */
  groups: Pick<KnownDevices, 'group'>;
  /** Called after a tenant's rules changed, so evaluation picks them up. */
  rulesChanged(tenantId: string): Promise<void> | void;
}

/** Outcome of an update. */
export type RuleUpdate = { rule: Rule } | { notFound: true } | { violations: FieldViolation[] } | { unknownGroup: string };

/** Rule CRUD, tenant-scoped; secrets generated here and shown only on write. */
export class Rules {
  constructor(private readonly deps: RulesDeps) {}

  private fillSecrets(rule: Rule, previous?: Rule): Rule {
    return {
      ...rule,
      actions: rule.actions.map((a, i) => {
        if (!a.webhook || a.webhook.secret) return a;
        const kept = previous?.actions[i]?.webhook?.secret;
        return { ...a, webhook: { ...a.webhook, secret: kept || newWebhookSecret() } };
      }),
    };
  }

  /** Creates a rule (validated by the caller with {@link ruleViolations}); the answer carries the webhook secrets. */
  async create(tenantId: string, rule: Rule): Promise<Rule | { nameTaken: true } | { unknownGroup: string }> {
    const group = unknownGroup(this.deps.groups, tenantId, sourceOf(rule).groupIds);
    if (group) return { unknownGroup: group };
    const created = await this.deps.store.createRule(tenantId, this.fillSecrets(rule));
    if (created) await this.deps.rulesChanged(tenantId);
    return created ?? { nameTaken: true };
  }

  /** A rule without its secrets. */
  async get(tenantId: string, id: string): Promise<Rule | undefined> {
    const rule = await this.deps.store.getRule(tenantId, id);
    return rule && withoutSecrets(rule);
  }

  /** A rule with its secrets, for a dry run or evaluation. */
  getWithSecrets(tenantId: string, id: string): Promise<Rule | undefined> {
    return this.deps.store.getRule(tenantId, id);
  }

  /** A page of rules without secrets. */
  async list(tenantId: string, limit: number, after?: [string, string]): Promise<{ items: Rule[]; next?: [string, string] }> {
    const rows = await this.deps.store.listRules(tenantId, limit + 1, after);
    const items = rows.slice(0, limit).map(withoutSecrets);
    const last = items[items.length - 1];
    return { items, next: rows.length > limit && last ? [last.createTime!.toISOString(), last.id] : undefined };
  }

  /** Replaces a rule's definition; empty webhook secrets keep the stored one of the same action position. */
  async update(tenantId: string, rule: Rule): Promise<RuleUpdate> {
    const previous = await this.deps.store.getRule(tenantId, rule.id);
    if (!previous) return { notFound: true };
    const violations = ruleViolations(rule);
    if (violations.length > 0) return { violations };
    const group = unknownGroup(this.deps.groups, tenantId, sourceOf(rule).groupIds);
    if (group) return { unknownGroup: group };
    const updated = await this.deps.store.updateRule(tenantId, this.fillSecrets(rule, previous));
    if (!updated) return { notFound: true };
    await this.deps.rulesChanged(tenantId);
    return { rule: updated };
  }

  /** Deletes a rule; false when there was none. */
  async delete(tenantId: string, id: string): Promise<boolean> {
    const deleted = await this.deps.store.deleteRule(tenantId, id);
    if (deleted) await this.deps.rulesChanged(tenantId);
    return deleted;
  }
}
