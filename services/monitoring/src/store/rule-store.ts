import { Delivery, DeliveryState, NotificationChannel, Rule, RuleAction, RuleSource } from '../../../../gen/ts/iot/monitoring/v1/rules';
import { deleteInChunks } from './chunked-delete';
import { durationToMs, msToDuration, PG_ERROR, Pool } from '@iot-mesh/runtime';
import { isId } from './alert-store';

const NIL_UUID = '00000000-0000-0000-0000-000000000000';

/** Counter increments of one rule, summed by {@link RuleRepository.addStats}. */
export interface RuleStatsDelta {
  matched: number;
  actionsOk: number;
  actionsFailed: number;
  actionsDeadLettered: number;
  evaluationErrors: number;
  /** Sum of the latencies of the successful actions, in ms. */
  latencyMsSum: number;
}

/** A delivery to record (id and time assigned here). */
export type NewDelivery = Omit<Delivery, 'id' | 'createTime'> & { tenantId: string };

/** Source and actions are stored as their canonical proto3 JSON (durations as strings, no bigints). */
function sourceJson(rule: Rule): string {
  return JSON.stringify(RuleSource.toJSON(rule.source ?? RuleSource.fromPartial({})));
}

function actionsJson(rule: Rule): string {
  return JSON.stringify(rule.actions.map((a) => RuleAction.toJSON(a)));
}

function ruleOf(r: any): Rule {
  const ok = Number(r.actions_ok);
  return {
    id: r.id,
    tenantId: r.tenant_id,
    name: r.name,
    source: RuleSource.fromJSON(r.source),
    condition: r.condition,
    actions: (r.actions as unknown[]).map((a) => RuleAction.fromJSON(a)),
    enabled: r.enabled,
    createTime: r.create_time,
    updateTime: r.update_time,
    stats: {
      matched: BigInt(r.matched),
      actionsOk: BigInt(r.actions_ok),
      actionsFailed: BigInt(r.actions_failed),
      actionsDeadLettered: BigInt(r.actions_dead_lettered),
      evaluationErrors: BigInt(r.evaluation_errors),
      meanActionLatency: msToDuration(ok > 0 ? r.latency_ms_sum / ok : 0),
    },
  };
}

/** How a channel's retry policy is stored (milliseconds). */
interface StoredRetry {
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
}

function channelOf(r: any): NotificationChannel {
  const retry = r.retry as StoredRetry;
  return {
    id: r.id,
    tenantId: r.tenant_id,
    name: r.name,
    ...(r.kind as Pick<NotificationChannel, 'webhook' | 'email' | 'nats'>),
    retry: { maxAttempts: retry.maxAttempts, initialBackoff: msToDuration(retry.initialBackoffMs), maxBackoff: msToDuration(retry.maxBackoffMs) },
    rateLimitPerMinute: r.rate_limit_per_minute,
    createTime: r.create_time,
  };
}

function deliveryOf(r: any): Delivery {
  return {
    id: r.id,
    ruleId: r.rule_id,
    channelId: r.channel_id ?? '',
    actionKind: r.action_kind,
    deviceId: r.device_id,
    messageId: r.message_id,
    state: r.state as DeliveryState,
    attempts: r.attempts,
    lastError: r.last_error,
    webhookId: r.webhook_id,
    createTime: r.create_time,
    alertId: r.alert_id ?? '',
    alertEvent: r.alert_event,
  };
}

/** Rules, notification channels and their delivery log; every read but {@link enabledRules} is scoped to one tenant. */
export interface RuleRepository {
  /** Stores a new rule; undefined when the tenant already has one of that name. */
  createRule(tenantId: string, rule: Rule): Promise<Rule | undefined>;
  getRule(tenantId: string, id: string): Promise<Rule | undefined>;
  /** Rules oldest first, after the keyset position `after` ([createTime ISO, id]). */
  listRules(tenantId: string, limit: number, after?: [string, string]): Promise<Rule[]>;
  /** Replaces a rule's definition; undefined when there is none. */
  updateRule(tenantId: string, rule: Rule): Promise<Rule | undefined>;
  deleteRule(tenantId: string, id: string): Promise<boolean>;
  /** Enabled rules of every tenant, for evaluation. */
  enabledRules(): Promise<Rule[]>;
  /** Adds counter increments (from one replica's flush). */
  addStats(deltas: Map<string, RuleStatsDelta>): Promise<void>;

  createChannel(tenantId: string, channel: NotificationChannel): Promise<NotificationChannel>;
  getChannel(tenantId: string, id: string): Promise<NotificationChannel | undefined>;
  listChannels(tenantId: string, limit: number, after?: [string, string]): Promise<NotificationChannel[]>;
  deleteChannel(tenantId: string, id: string): Promise<boolean>;

  recordDelivery(delivery: NewDelivery): Promise<void>;
  /** Newest first, before the keyset position `before` ([createTime ISO, id]). */
  ruleDeliveries(tenantId: string, ruleId: string, state: DeliveryState | undefined, limit: number, before?: [string, string]): Promise<Delivery[]>;
  channelDeliveries(tenantId: string, channelId: string, limit: number, before?: [string, string]): Promise<Delivery[]>;
  /** An alert's notifications, newest first. */
  alertDeliveries(tenantId: string, alertId: string, limit: number, before?: [string, string]): Promise<Delivery[]>;
  /** Deletes log entries older than `before` (delivery-log retention); how many went. */
  pruneDeliveries(before: Date): Promise<number>;
}

/** {@link RuleRepository} on PostgreSQL (migration 0003_rules.sql). */
export class PostgresRuleStore implements RuleRepository {
  constructor(private readonly pool: Pool) {}

  async createRule(tenantId: string, rule: Rule): Promise<Rule | undefined> {
    try {
      const { rows } = await this.pool.query(
        `INSERT INTO rules (tenant_id, name, source, condition, actions, enabled) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
        [tenantId, rule.name, sourceJson(rule), rule.condition, actionsJson(rule), rule.enabled],
      );
      return ruleOf(rows[0]);
    } catch (err) {
      if ((err as { code?: string }).code === PG_ERROR.uniqueViolation) return undefined;
      throw err;
    }
  }

  async getRule(tenantId: string, id: string): Promise<Rule | undefined> {
    if (!isId(id)) return undefined;
    const { rows } = await this.pool.query('SELECT * FROM rules WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return rows[0] && ruleOf(rows[0]);
  }

  async listRules(tenantId: string, limit: number, after?: [string, string]): Promise<Rule[]> {
    const { rows } = await this.pool.query(
      `SELECT * FROM rules WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (create_time, id) > ($2, $3::uuid)) ORDER BY create_time, id LIMIT $4`,
      [tenantId, after?.[0] ?? null, after?.[1] ?? NIL_UUID, limit],
    );
    return rows.map(ruleOf);
  }

  async updateRule(tenantId: string, rule: Rule): Promise<Rule | undefined> {
    if (!isId(rule.id)) return undefined;
    const { rows } = await this.pool.query(
      `UPDATE rules SET name = $3, source = $4, condition = $5, actions = $6, enabled = $7, update_time = now() WHERE tenant_id = $1 AND id = $2 RETURNING *`,
      [tenantId, rule.id, rule.name, sourceJson(rule), rule.condition, actionsJson(rule), rule.enabled],
    );
    return rows[0] && ruleOf(rows[0]);
  }

  async deleteRule(tenantId: string, id: string): Promise<boolean> {
    if (!isId(id)) return false;
    const { rowCount } = await this.pool.query('DELETE FROM rules WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return (rowCount ?? 0) > 0;
  }

  async enabledRules(): Promise<Rule[]> {
    const { rows } = await this.pool.query('SELECT * FROM rules WHERE enabled');
    return rows.map(ruleOf);
  }

  async addStats(deltas: Map<string, RuleStatsDelta>): Promise<void> {
    if (deltas.size === 0) return;
    const ids = [...deltas.keys()];
    const d = [...deltas.values()];
    // One statement for every rule of the flush; a rule deleted meanwhile is simply not updated.
    await this.pool.query(
      `UPDATE rules r SET matched = r.matched + u.matched, actions_ok = r.actions_ok + u.ok, actions_failed = r.actions_failed + u.failed,
         actions_dead_lettered = r.actions_dead_lettered + u.dead, evaluation_errors = r.evaluation_errors + u.errors, latency_ms_sum = r.latency_ms_sum + u.latency
       FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::float8[]) AS u(id, matched, ok, failed, dead, errors, latency)
       WHERE r.id = u.id`,
      [ids, d.map((x) => x.matched), d.map((x) => x.actionsOk), d.map((x) => x.actionsFailed), d.map((x) => x.actionsDeadLettered), d.map((x) => x.evaluationErrors), d.map((x) => x.latencyMsSum)],
    );
  }

  async createChannel(tenantId: string, channel: NotificationChannel): Promise<NotificationChannel> {
    const kind = channel.webhook ? { webhook: channel.webhook } : channel.email ? { email: channel.email } : { nats: channel.nats };
    const retry: StoredRetry = {
      maxAttempts: channel.retry!.maxAttempts,
      initialBackoffMs: durationToMs(channel.retry!.initialBackoff)!,
      maxBackoffMs: durationToMs(channel.retry!.maxBackoff)!,
    };
    const { rows } = await this.pool.query(
      `INSERT INTO notification_channels (tenant_id, name, kind, retry, rate_limit_per_minute) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
      [tenantId, channel.name, JSON.stringify(kind), JSON.stringify(retry), channel.rateLimitPerMinute],
    );
    return channelOf(rows[0]);
  }

  async getChannel(tenantId: string, id: string): Promise<NotificationChannel | undefined> {
    if (!isId(id)) return undefined;
    const { rows } = await this.pool.query('SELECT * FROM notification_channels WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return rows[0] && channelOf(rows[0]);
  }

  async listChannels(tenantId: string, limit: number, after?: [string, string]): Promise<NotificationChannel[]> {
    const { rows } = await this.pool.query(
      `SELECT * FROM notification_channels WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (create_time, id) > ($2, $3::uuid)) ORDER BY create_time, id LIMIT $4`,
      [tenantId, after?.[0] ?? null, after?.[1] ?? NIL_UUID, limit],
    );
    return rows.map(channelOf);
  }

  async deleteChannel(tenantId: string, id: string): Promise<boolean> {
    if (!isId(id)) return false;
    const { rowCount } = await this.pool.query('DELETE FROM notification_channels WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
    return (rowCount ?? 0) > 0;
  }

  async recordDelivery(d: NewDelivery): Promise<void> {
    await this.pool.query(
      `INSERT INTO rule_deliveries (tenant_id, rule_id, channel_id, action_kind, device_id, message_id, state, attempts, last_error, webhook_id, alert_id, alert_event)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [d.tenantId, d.ruleId, d.channelId || null, d.actionKind, d.deviceId, d.messageId, d.state, d.attempts, d.lastError, d.webhookId, d.alertId || null, d.alertEvent],
    );
  }

  async ruleDeliveries(tenantId: string, ruleId: string, state: DeliveryState | undefined, limit: number, before?: [string, string]): Promise<Delivery[]> {
    if (!isId(ruleId)) return [];
    const { rows } = await this.pool.query(
      `SELECT * FROM rule_deliveries WHERE tenant_id = $1 AND rule_id = $2 AND ($3::int IS NULL OR state = $3)
         AND ($4::timestamptz IS NULL OR (create_time, id) < ($4, $5::uuid)) ORDER BY create_time DESC, id DESC LIMIT $6`,
      [tenantId, ruleId, state ?? null, before?.[0] ?? null, before?.[1] ?? NIL_UUID, limit],
    );
    return rows.map(deliveryOf);
  }

  async channelDeliveries(tenantId: string, channelId: string, limit: number, before?: [string, string]): Promise<Delivery[]> {
    if (!isId(channelId)) return [];
    const { rows } = await this.pool.query(
      `SELECT * FROM rule_deliveries WHERE tenant_id = $1 AND channel_id = $2 AND ($3::timestamptz IS NULL OR (create_time, id) < ($3, $4::uuid))
         ORDER BY create_time DESC, id DESC LIMIT $5`,
      [tenantId, channelId, before?.[0] ?? null, before?.[1] ?? NIL_UUID, limit],
    );
    return rows.map(deliveryOf);
  }

  async alertDeliveries(tenantId: string, alertId: string, limit: number, before?: [string, string]): Promise<Delivery[]> {
    if (!isId(alertId)) return [];
    const { rows } = await this.pool.query(
      `SELECT * FROM rule_deliveries WHERE tenant_id = $1 AND alert_id = $2 AND ($3::timestamptz IS NULL OR (create_time, id) < ($3, $4::uuid))
         ORDER BY create_time DESC, id DESC LIMIT $5`,
      [tenantId, alertId, before?.[0] ?? null, before?.[1] ?? NIL_UUID, limit],
    );
    return rows.map(deliveryOf);
  }

  pruneDeliveries(before: Date, chunkSize = 10_000): Promise<number> {
    return deleteInChunks(this.pool, `DELETE FROM rule_deliveries WHERE ctid = ANY (ARRAY(SELECT ctid FROM rule_deliveries WHERE create_time < $1 LIMIT $2))`, [before], chunkSize);
  }
}
