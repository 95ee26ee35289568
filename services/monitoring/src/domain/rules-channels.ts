import crypto from 'node:crypto';
import type { NotificationChannel, RetryPolicy } from '../../../../gen/ts/iot/monitoring/v1/rules';
import { durationToMs, FieldViolation, isSubjectToken, msToDuration } from '@iot-mesh/runtime';
import type { RuleRepository } from '../store/rule-store';

/** How often and how patiently a delivery is retried, in plain numbers. */
export interface RetrySchedule {
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
}

/** Default retry policy of a channel that names none. */
export const DEFAULT_RETRY: RetrySchedule = { maxAttempts: 5, initialBackoffMs: 1000, maxBackoffMs: 60_000 };
/** Most attempts a policy may ask for. */
const MAX_ATTEMPTS = 100;
/** Default notifications per minute of a channel. */
export const DEFAULT_RATE_PER_MINUTE = 60;
const EMAIL = /^[^\s@]+@[^\s@]+$/;
/** Standard Webhooks secrets: `whsec_` and a base64 key of at least 16 bytes. */
export const WEBHOOK_SECRET = /^whsec_[A-Za-z0-9+/]{22,}={0,2}$/;

/** A new Standard Webhooks signing secret. */
export function newWebhookSecret(): string {
  return `whsec_${crypto.randomBytes(24).toString('base64')}`;
}

/** The backoff before attempt `attempt + 1` (attempt counts from 1): doubling, capped. */
export function backoffMs(schedule: RetrySchedule, attempt: number): number {
  return Math.min(schedule.maxBackoffMs, schedule.initialBackoffMs * 2 ** (attempt - 1));
}

/** A retry policy (a channel's, a webhook action's) with the unset parts taken from `defaults`. */
export function retryScheduleOf(policy: RetryPolicy | undefined, defaults: RetrySchedule = DEFAULT_RETRY): RetrySchedule {
  return {
    maxAttempts: policy?.maxAttempts || defaults.maxAttempts,
    initialBackoffMs: durationToMs(policy?.initialBackoff) || defaults.initialBackoffMs,
    maxBackoffMs: durationToMs(policy?.maxBackoff) || defaults.maxBackoffMs,
  };
}

/** What is wrong with a retry policy; `at` is its field path. */
export function retryViolations(policy: RetryPolicy | undefined, at: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  if (!policy) return out;
  if (policy.maxAttempts < 0 || policy.maxAttempts > MAX_ATTEMPTS) out.push({ field: `${at}.max_attempts`, description: `must be between 1 and ${MAX_ATTEMPTS} (0: the default)` });
  if ((durationToMs(policy.initialBackoff) ?? 0) < 0) out.push({ field: `${at}.initial_backoff`, description: 'must not be negative' });
  if ((durationToMs(policy.maxBackoff) ?? 0) < 0) out.push({ field: `${at}.max_backoff`, description: 'must not be negative' });
  return out;
}

/** What is wrong with a channel definition, field by field. */
export function channelViolations(channel: NotificationChannel): FieldViolation[] {
  const out: FieldViolation[] = [];
  const add = (field: string, description: string) => out.push({ field, description });
  if (!channel.name || channel.name.length > 128) add('channel.name', 'is required (at most 128 characters)');
  const kinds = [channel.webhook, channel.email, channel.nats].filter(Boolean).length;
  if (kinds !== 1) add('channel', 'must set exactly one of webhook, email, nats');
  if (channel.webhook) {
    let ok = false;
    try {
      ok = ['http:', 'https:'].includes(new URL(channel.webhook.url).protocol);
    } catch {
      // not a URL
    }
    if (!ok) add('channel.webhook.url', 'must be an http or https URL');
    if (channel.webhook.secret && !WEBHOOK_SECRET.test(channel.webhook.secret)) add('channel.webhook.secret', 'must be whsec_ followed by a base64 key of at least 16 bytes');
  }
  if (channel.email) {
    if (channel.email.to.length === 0) add('channel.email.to', 'needs at least one address');
    channel.email.to.forEach((a, i) => EMAIL.test(a) || add(`channel.email.to[${i}]`, 'is not an e-mail address'));
  }
  if (channel.nats && !isSubjectToken(channel.nats.topic)) add('channel.nats.topic', 'must be one subject token (lower-case letters, digits, _ or -)');
  out.push(...retryViolations(channel.retry, 'channel.retry'));
  if (channel.rateLimitPerMinute < 0) add('channel.rate_limit_per_minute', 'must not be negative');
  return out;
}

/** Notification channel CRUD, tenant-scoped. */
export class NotificationChannels {
  constructor(private readonly store: RuleRepository) {}

  /** Creates a channel (validated by the caller) with defaults filled in; the answer carries the webhook secret. */
  create(tenantId: string, channel: NotificationChannel): Promise<NotificationChannel> {
    const retry = retryScheduleOf(channel.retry);
    return this.store.createChannel(tenantId, {
      ...channel,
      webhook: channel.webhook && { ...channel.webhook, secret: channel.webhook.secret || newWebhookSecret() },
      retry: { maxAttempts: retry.maxAttempts, initialBackoff: msToDuration(retry.initialBackoffMs), maxBackoff: msToDuration(retry.maxBackoffMs) },
      rateLimitPerMinute: channel.rateLimitPerMinute || DEFAULT_RATE_PER_MINUTE,
    });
  }

  /** A channel without its secret. */
  async get(tenantId: string, id: string): Promise<NotificationChannel | undefined> {
    const channel = await this.store.getChannel(tenantId, id);
    return channel && withoutSecret(channel);
  }

  /** A page of channels without secrets. */
  async list(tenantId: string, limit: number, after?: [string, string]): Promise<{ items: NotificationChannel[]; next?: [string, string] }> {
    const rows = await this.store.listChannels(tenantId, limit + 1, after);
    const items = rows.slice(0, limit).map(withoutSecret);
    const last = items[items.length - 1];
    return { items, next: rows.length > limit && last ? [last.createTime!.toISOString(), last.id] : undefined };
  }

  delete(tenantId: string, id: string): Promise<boolean> {
    return this.store.deleteChannel(tenantId, id);
  }
}

function withoutSecret(channel: NotificationChannel): NotificationChannel {
  return channel.webhook ? { ...channel, webhook: { ...channel.webhook, secret: '' } } : channel;
}
