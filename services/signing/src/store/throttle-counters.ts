import crypto from 'node:crypto';
import type { Redis } from '@iot-mesh/runtime';

/** One throttled key: an account (tenant + email, or another account-like key) or a source address. */
export interface ThrottleScope {
  kind: 'account' | 'address';
  id: string;
}

/** Failure counters and lock-outs of login throttling. Errors mean the counters are unreachable. */
export interface ThrottleCounters {
  /** Milliseconds each scope stays locked out (0 or less: not locked). */
  lockRemainingMs(scopes: ThrottleScope[]): Promise<number[]>;
  /** Counts one failure, forgotten `windowMs` after the latest; returns the failures in the window. */
  countFailure(scope: ThrottleScope, windowMs: number): Promise<number>;
  /** Locks the scope out for `ms`. */
  lockOut(scope: ThrottleScope, ms: number): Promise<void>;
  /** Forgets the scope's failures and lock-out. */
  forget(scope: ThrottleScope): Promise<void>;
}

/**
 * {@link ThrottleCounters} in Redis: `<prefix>fails:<acct|addr>:<id>` counts
 * failures, `<prefix>lock:…` is set while locked out. Account ids are hashed
 * (they contain email addresses).
 */
export class RedisThrottleCounters implements ThrottleCounters {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  private keysOf(scope: ThrottleScope): { fails: string; lock: string } {
    const id = scope.kind === 'account' ? crypto.createHash('sha256').update(scope.id.toLowerCase()).digest('hex').slice(0, 32) : scope.id;
    const kind = scope.kind === 'account' ? 'acct' : 'addr';
    return { fails: `${this.prefix}fails:${kind}:${id}`, lock: `${this.prefix}lock:${kind}:${id}` };
  }

  lockRemainingMs(scopes: ThrottleScope[]): Promise<number[]> {
    return Promise.all(scopes.map((scope) => this.redis.pttl(this.keysOf(scope).lock)));
  }

  async countFailure(scope: ThrottleScope, windowMs: number): Promise<number> {
    const { fails } = this.keysOf(scope);
    const results = await this.redis.multi().incr(fails).pexpire(fails, windowMs).exec();
    return Number(results?.[0]?.[1] ?? 0);
  }

  async lockOut(scope: ThrottleScope, ms: number): Promise<void> {
    await this.redis.set(this.keysOf(scope).lock, '1', 'PX', ms);
  }

  async forget(scope: ThrottleScope): Promise<void> {
    const { fails, lock } = this.keysOf(scope);
    await this.redis.del(fails, lock);
  }
}
