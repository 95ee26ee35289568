import crypto from 'node:crypto';
import { errors, Logger, Redis } from '@iot-mesh/runtime';

/** Limits of failed-login throttling. */
export interface ThrottlePolicy {
  /** Failures per account before back-off starts. */
  accountFreeAttempts: number;
  /** Failures per source address before back-off starts. */
  addressFreeAttempts: number;
  /** First lock-out; doubles with every further failure. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Failures older than this are forgotten. */
  windowMs: number;
  /** Key prefix in Redis. */
  prefix: string;
}

/** What a throttled attempt is keyed by. */
export interface ThrottleSubject {
  /** Tenant name + email, or another account-like key. */
  account: string;
  address: string;
}

/**
 * Failed-login throttling in Redis, per account and per source address, with
 * exponential back-off: after the free attempts every further failure locks
 * the key for base × 2^n (capped). A locked attempt is refused with
 * RESOURCE_EXHAUSTED and `google.rpc.RetryInfo` saying when to come back.
 * When Redis is unreachable throttling is skipped (logged), not logins.
 */
export class LoginThrottle {
  constructor(private readonly redis: Redis, private readonly policy: ThrottlePolicy, private readonly log: Logger) {}

  private keys(subject: ThrottleSubject) {
    const account = crypto.createHash('sha256').update(subject.account.toLowerCase()).digest('hex').slice(0, 32);
    const p = this.policy.prefix;
    return {
      account: { fails: `${p}fails:acct:${account}`, lock: `${p}lock:acct:${account}`, free: this.policy.accountFreeAttempts },
      address: { fails: `${p}fails:addr:${subject.address}`, lock: `${p}lock:addr:${subject.address}`, free: this.policy.addressFreeAttempts },
    };
  }

  /** Throws RESOURCE_EXHAUSTED while the account or the address is locked out. */
  async check(subject: ThrottleSubject): Promise<void> {
    const keys = this.keys(subject);
    let waits: number[];
    try {
      waits = await Promise.all([this.redis.pttl(keys.account.lock), this.redis.pttl(keys.address.lock)]);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'login throttling unavailable (redis)');
      return;
    }
    const retryAfterMs = Math.max(...waits);
    if (retryAfterMs > 0) throw errors.resourceExhausted(`too many failed attempts; retry in ${Math.ceil(retryAfterMs / 1000)} s`, retryAfterMs);
  }

  /** Counts a failure; returns the lock-out it caused (0 for none). */
  async failed(subject: ThrottleSubject): Promise<number> {
    const keys = this.keys(subject);
    try {
      let longest = 0;
      for (const key of [keys.account, keys.address]) {
        const results = await this.redis.multi().incr(key.fails).pexpire(key.fails, this.policy.windowMs).exec();
        const fails = Number(results?.[0]?.[1] ?? 0);
        if (fails > key.free) {
          const delay = Math.min(this.policy.baseDelayMs * 2 ** Math.min(fails - key.free - 1, 30), this.policy.maxDelayMs);
          await this.redis.set(key.lock, '1', 'PX', delay);
          longest = Math.max(longest, delay);
        }
      }
      return longest;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'login throttling unavailable (redis)');
      return 0;
    }
  }

  /** Forgets the account's failures after a successful login (the address keeps its count). */
  async succeeded(subject: ThrottleSubject): Promise<void> {
    const keys = this.keys(subject);
    await this.redis.del(keys.account.fails, keys.account.lock).catch(() => undefined);
  }
}
