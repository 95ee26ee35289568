import { DEFAULT_LATENCY_BUCKETS, Logger, metrics } from '@iot-mesh/runtime';
import type { ActionKind } from '../domain/rules';
import type { RuleRepository, RuleStatsDelta } from '../store/rule-store';

/** A rule as counters name it. */
export interface RuleRef {
  id: string;
  tenantId: string;
  name: string;
}

/** Rules' Prometheus metrics (labels: tenant, rule name, action kind). */
function ruleMetrics() {
  return {
    matched: metrics.counter('iot_rule_matched_total', 'Telemetry messages whose rule condition held.', ['tenant', 'rule']),
    evaluationErrors: metrics.counter('iot_rule_evaluation_errors_total', 'Telemetry messages a rule condition could not be evaluated on.', ['tenant', 'rule']),
    actions: metrics.counter('iot_rule_actions_total', 'Rule action attempts and final outcomes: ok, failed (one attempt), dead_lettered.', ['tenant', 'rule', 'kind', 'outcome']),
    latency: metrics.histogram('iot_rule_action_latency_seconds', 'Seconds from a message reaching the platform to a rule action succeeding.', ['tenant', 'rule', 'kind'], DEFAULT_LATENCY_BUCKETS),
    queued: metrics.gauge('iot_rule_action_queue', 'Rule actions waiting (queued, in backoff or in flight) in this replica.', ['tenant', 'rule']),
  };
}

function emptyDelta(): RuleStatsDelta {
  return { matched: 0, actionsOk: 0, actionsFailed: 0, actionsDeadLettered: 0, evaluationErrors: 0, latencyMsSum: 0 };
}

/**
 * Per-rule counters: Prometheus at once, and increments summed into the
 * rule's row on every flush, so GetRule shows totals over every replica.
 */
export class RuleCounters {
  private readonly metrics = ruleMetrics();
  private pending = new Map<string, RuleStatsDelta>();
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: RuleRepository,
    private readonly log: Logger,
  ) {}

  private delta(rule: RuleRef): RuleStatsDelta {
    let d = this.pending.get(rule.id);
    if (!d) this.pending.set(rule.id, (d = emptyDelta()));
    return d;
  }

  matched(rule: RuleRef): void {
    this.delta(rule).matched++;
    this.metrics.matched.inc({ tenant: rule.tenantId, rule: rule.name });
  }

  evaluationError(rule: RuleRef): void {
    this.delta(rule).evaluationErrors++;
    this.metrics.evaluationErrors.inc({ tenant: rule.tenantId, rule: rule.name });
  }

  ok(rule: RuleRef, kind: ActionKind, latencyMs: number): void {
    const d = this.delta(rule);
    d.actionsOk++;
    d.latencyMsSum += latencyMs;
    this.metrics.actions.inc({ tenant: rule.tenantId, rule: rule.name, kind, outcome: 'ok' });
    this.metrics.latency.observe({ tenant: rule.tenantId, rule: rule.name, kind }, latencyMs / 1000);
  }

  failed(rule: RuleRef, kind: ActionKind): void {
    this.delta(rule).actionsFailed++;
    this.metrics.actions.inc({ tenant: rule.tenantId, rule: rule.name, kind, outcome: 'failed' });
  }

  deadLettered(rule: RuleRef, kind: ActionKind): void {
    this.delta(rule).actionsDeadLettered++;
    this.metrics.actions.inc({ tenant: rule.tenantId, rule: rule.name, kind, outcome: 'dead_lettered' });
  }

  queueSize(rule: RuleRef, size: number): void {
    this.metrics.queued.set({ tenant: rule.tenantId, rule: rule.name }, size);
  }

  /** Flushes every `intervalMs` until {@link stop}. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  /** Adds what was counted since the last flush to the rules' rows (one flush at a time; a failed one is kept for the next). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const deltas = this.pending;
      this.pending = new Map();
      try {
        await this.store.addStats(deltas);
      } catch (err) {
        for (const [id, d] of deltas) {
          const now = this.pending.get(id) ?? emptyDelta();
          for (const k of Object.keys(d) as (keyof RuleStatsDelta)[]) now[k] += d[k];
          this.pending.set(id, now);
        }
        this.log.warn({ err: (err as Error).message }, 'rule counters not flushed; kept for the next flush');
      }
    });
    return this.flushing;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
