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
const TAKE_SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
`;

type WithTake = Redis & { iotTakeToken(key: string, rate: number, burst: number): Promise<[number, number]> };

/** Takes one token from the bucket `key` in Redis (shared by every replica). */
export async function takeFromRedis(redis: Redis, key: string, settings: BucketSettings): Promise<Take> {
  const client = redis as WithTake;
  if (typeof client.iotTakeToken !== 'function') redis.defineCommand('iotTakeToken', { numberOfKeys: 1, lua: TAKE_SCRIPT });
  const [allowed, wait] = await client.iotTakeToken(key, settings.ratePerS, settings.burst);
  return { allowed: allowed === 1, retryAfterMs: Number(wait) };
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
