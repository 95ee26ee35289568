import type { Redis } from '../redis';

/** The outcome of taking one token. */
export interface Take {
  allowed: boolean;
  /** When refused: milliseconds until a token is there again. */
  retryAfterMs: number;
}

/** Rate and burst of one bucket. */
export interface BucketSettings {
  /** Tokens added per second. */
  ratePerS: number;
  /** Most tokens a bucket holds (the burst a quiet client may spend at once). */
  burst: number;
}

// Refills from Redis's own clock (TIME), so replicas with skewed clocks share
// one bucket correctly; keys expire once a full bucket would have refilled.
// Takes up to ARGV[3] whole tokens at once (a lease); answers how many, and
// when none, how long until one is there.
const TAKE_SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local granted = math.min(want, math.floor(tokens))
local wait = 0
if granted >= 1 then
  tokens = tokens - granted
else
  granted = 0
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {granted, wait}
`;

type WithTake = Redis & { iotTakeTokens(key: string, rate: number, burst: number, want: number): Promise<[number, number]> };

/** Takes up to `want` tokens from the bucket `key` in Redis (shared by every replica): how many it got, and when none, the wait. */
async function takeFromRedis(redis: Redis, key: string, settings: BucketSettings, want: number): Promise<{ granted: number; retryAfterMs: number }> {
  const client = redis as WithTake;
  if (typeof client.iotTakeTokens !== 'function') redis.defineCommand('iotTakeTokens', { numberOfKeys: 1, lua: TAKE_SCRIPT });
  const [granted, wait] = await client.iotTakeTokens(key, settings.ratePerS, settings.burst, want);
  return { granted: Number(granted), retryAfterMs: Number(wait) };
}

/** How long a lease's unused tokens may be spent; then they are dropped (never given back, so never over the rate). */
const LEASE_MS = 1000;

/**
 * The tokens a process takes from a Redis bucket at a time: a twentieth of the
 * rate or burst, whichever is smaller, at most 1,000 (1 for small limits, as
 * if taken one by one). One script call then serves that many calls instead of
 * one. A tenant is never admitted above its rate; with R replicas it may be
 * admitted up to R leases less than it within a second.
 */
export function leaseSize(settings: BucketSettings): number {
  return Math.max(1, Math.min(1000, Math.floor(Math.min(settings.ratePerS, settings.burst) / 20)));
}

/**
 * Token buckets in Redis shared by every replica, spent locally from leases
 * ({@link leaseSize}): a call costs a Redis round trip only when its
 * tenant's lease is used up (concurrent calls then wait for one fetch).
 */
export class LeasedBuckets {
  private readonly leases = new Map<string, { tokens: number; until: number }>();
  private readonly fetching = new Map<string, Promise<number>>();
  private readonly lease: number;

  constructor(
    private readonly redis: Redis,
    private readonly settings: BucketSettings,
    options: { lease?: number; now?: () => number } = {},
  ) {
    this.lease = options.lease ?? leaseSize(settings);
    this.now = options.now ?? Date.now;
  }

  private readonly now: () => number;

  /** Takes one token from the bucket `key`; rejects when Redis does not answer. */
  async take(key: string): Promise<Take> {
    for (;;) {
      const held = this.leases.get(key);
      if (held && held.tokens >= 1 && held.until > this.now()) {
        held.tokens -= 1;
        return { allowed: true, retryAfterMs: 0 };
      }
      const pending = this.fetching.get(key);
      if (pending) {
        await pending;
        continue;
      }
      const fetch = this.fetch(key);
      this.fetching.set(key, fetch);
      let retryAfterMs: number;
      try {
        retryAfterMs = await fetch;
      } finally {
        this.fetching.delete(key);
      }
      if (retryAfterMs > 0) return { allowed: false, retryAfterMs };
    }
  }

  /** Fetches a new lease for `key`; resolves with the wait when Redis had no token (0 when it granted some). */
  private async fetch(key: string): Promise<number> {
    const { granted, retryAfterMs } = await takeFromRedis(this.redis, key, this.settings, this.lease);
    const now = this.now();
    if (this.leases.size > 10_000) for (const [k, l] of this.leases) if (l.until <= now) this.leases.delete(k);
    this.leases.set(key, { tokens: granted, until: now + LEASE_MS });
    return granted >= 1 ? 0 : Math.max(1, retryAfterMs);
  }
}

/**
 * The same bucket in this process's memory: the fallback while Redis is
 * down (each replica then admits its own share, so the tenant's total rate
 * is at most replicas × rate). Idle buckets are dropped once full again.
 */
export class LocalBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes one token from the bucket `key`. */
  take(key: string, settings: BucketSettings): Take {
    const now = this.now();
    if (this.buckets.size > 10_000) this.prune(now, settings);
    const bucket = this.buckets.get(key) ?? { tokens: settings.burst, at: now };
    bucket.tokens = Math.min(settings.burst, bucket.tokens + (Math.max(0, now - bucket.at) * settings.ratePerS) / 1000);
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true, retryAfterMs: 0 };
    }
    return { allowed: false, retryAfterMs: Math.ceil(((1 - bucket.tokens) * 1000) / settings.ratePerS) };
  }

  private prune(now: number, settings: BucketSettings): void {
    const fullAfterMs = (settings.burst * 1000) / settings.ratePerS;
    for (const [key, bucket] of this.buckets) if (now - bucket.at > fullAfterMs) this.buckets.delete(key);
  }
}
