import crypto from 'node:crypto';
import type { Redis } from '../redis';

// A principal's open streams over every replica: a sorted set of stream ids
// scored by when their lease ends (Redis's own clock, like the call-rate
// bucket). Opening drops ended leases, refuses at the limit, else adds one.
const OPEN_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`;

// Extends the leases of streams still open (ARGV: ttl, then one id per key).
const RENEW_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return #KEYS
`;

type WithScripts = Redis & {
  iotOpenStream(key: string, id: string, limit: number, ttlMs: number): Promise<number>;
  iotRenewStreams(...args: (string | number)[]): Promise<number>;
};

/** How long a stream's lease lasts unless renewed: a process that dies leaves its streams counted this long at most. */
export const STREAM_LEASE_MS = 60_000;
/** Leases are renewed this often (a third of their length: two renewals may fail before one ends). */
const RENEW_EVERY_MS = STREAM_LEASE_MS / 3;
/** Streams renewed per script call. */
const RENEW_BATCH = 500;

/**
 * Open server streams per key (a principal) counted over every replica in
 * Redis: each stream holds a lease renewed while it is open and removed when
 * it ends, so a replica that dies without closing its streams frees them
 * within {@link STREAM_LEASE_MS}.
 */
export class SharedStreamCounts {
  private readonly process = crypto.randomUUID();
  private seq = 0;
  /** Streams this process holds a lease for: id → key. */
  private readonly held = new Map<string, string>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly redis: Redis) {
    const client = redis as WithScripts;
    if (typeof client.iotOpenStream !== 'function') redis.defineCommand('iotOpenStream', { numberOfKeys: 1, lua: OPEN_SCRIPT });
    if (typeof client.iotRenewStreams !== 'function') redis.defineCommand('iotRenewStreams', { lua: RENEW_SCRIPT });
  }

  /** A lease for one more stream of `key`: its id, or undefined at `limit`. Rejects when Redis does not answer. */
  async open(key: string, limit: number): Promise<string | undefined> {
    const id = `${this.process}:${++this.seq}`;
    if ((await (this.redis as WithScripts).iotOpenStream(key, id, limit, STREAM_LEASE_MS)) !== 1) return undefined;
    this.held.set(id, key);
    this.timer ??= setInterval(() => void this.renew(), RENEW_EVERY_MS).unref();
    return id;
  }

  /** Ends a stream's lease (a failed removal is left to expire). */
  async close(id: string): Promise<void> {
    const key = this.held.get(id);
    if (key === undefined) return;
    this.held.delete(id);
    if (this.held.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    await this.redis.zrem(key, id).catch(() => undefined);
  }

  /** Renews every lease this process holds; one that cannot be renewed now is tried at the next round. */
  async renew(): Promise<void> {
    const entries = [...this.held];
    for (let i = 0; i < entries.length; i += RENEW_BATCH) {
      const batch = entries.slice(i, i + RENEW_BATCH);
      await (this.redis as WithScripts)
        .iotRenewStreams(batch.length, ...batch.map(([, key]) => key), STREAM_LEASE_MS, ...batch.map(([id]) => id))
        .catch(() => undefined);
    }
  }
}
