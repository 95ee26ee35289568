import { createTransport } from 'nodemailer';
import { ConfigOf, env } from '@iot-mesh/runtime';
import type { RuleActionOptions } from './rule-actions';
import type { RulesConsumerOptions } from './rules-consumer';

/** The rules' environment variables (README "Rules and notifications"); monitoring's env includes them. */
export const rulesEnv = {
  /** Evaluate rules in this replica (on the rules' own durable consumer). */
  RULES_ENABLED: env.bool(true),
  RULES_CONSUMER: env.string({ fallback: 'monitoring-rules' }),
  RULES_ACK_WAIT_MS: env.positiveInt(30_000),
  RULES_MAX_ACK_PENDING: env.positiveInt(10_000),
  /** How often rules changed through another replica are picked up. */
  RULES_RELOAD_MS: env.positiveInt(2000),
  /** Actions one rule may hold (queued, backing off, in flight) per replica; beyond it they are dead-lettered. */
  RULES_ACTION_QUEUE: env.positiveInt(1000),
  /** Actions of one rule in flight at once. */
  RULES_ACTION_CONCURRENCY: env.positiveInt(8),
  /** Attempts of a derived-metric, republish or webhook action before it is dead-lettered. */
  RULES_ACTION_MAX_ATTEMPTS: env.positiveInt(6),
  RULES_ACTION_INITIAL_BACKOFF_MS: env.positiveInt(1000),
  RULES_ACTION_MAX_BACKOFF_MS: env.positiveInt(60_000),
  /** Derivations deep a message may be and still get derived metrics (rules feeding rules stop there). */
  RULES_MAX_DEPTH: env.positiveInt(3),
  RULES_WEBHOOK_TIMEOUT_MS: env.positiveInt(10_000),
  /** How often each replica adds its rule counters to the database. */
  RULES_STATS_FLUSH_MS: env.positiveInt(1000),
  /** SMTP relay of e-mail channels, e.g. smtp://relay:25 or smtps://user:pass@relay:465; unset: e-mail deliveries dead-letter. */
  RULES_SMTP_URL: env.optional(),
  RULES_SMTP_FROM: env.string({ fallback: 'iot-mesh@localhost' }),
  /** Lease of a replica on its queued actions: a crashed replica's actions resume on another after this long. */
  RULES_QUEUE_LEASE_MS: env.positiveInt(30_000),
  /** Days the delivery log (rule actions and alert notifications) is kept. */
  RULES_DELIVERY_RETENTION_DAYS: env.positiveInt(30),
};

/** The rules' configuration, as loaded and validated. */
export type RulesConfig = ConfigOf<typeof rulesEnv>;

/** The rules' durable consumer. */
export function rulesConsumerOptions(config: RulesConfig & { TELEMETRY_STREAM: string }): RulesConsumerOptions {
  return { stream: config.TELEMETRY_STREAM, durable: config.RULES_CONSUMER, ackWaitMs: config.RULES_ACK_WAIT_MS, maxAckPending: config.RULES_MAX_ACK_PENDING, reloadMs: config.RULES_RELOAD_MS };
}

/** How actions are queued, retried and sent. */
export function ruleActionOptions(config: RulesConfig): RuleActionOptions {
  return {
    queueCapacity: config.RULES_ACTION_QUEUE,
    concurrency: config.RULES_ACTION_CONCURRENCY,
    retry: { maxAttempts: config.RULES_ACTION_MAX_ATTEMPTS, initialBackoffMs: config.RULES_ACTION_INITIAL_BACKOFF_MS, maxBackoffMs: config.RULES_ACTION_MAX_BACKOFF_MS },
    maxDepth: config.RULES_MAX_DEPTH,
    webhookTimeoutMs: config.RULES_WEBHOOK_TIMEOUT_MS,
    mailer: config.RULES_SMTP_URL ? createTransport(config.RULES_SMTP_URL) : undefined,
    mailFrom: config.RULES_SMTP_FROM,
    leaseMs: config.RULES_QUEUE_LEASE_MS,
  };
}
