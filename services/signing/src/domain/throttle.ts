import { errors, Logger } from '@iot-mesh/runtime';
import type { ThrottleCounters, ThrottleScope } from '../store/throttle-counters';

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
}

/** What a throttled attempt is keyed by. */
export interface ThrottleSubject {
  /** Tenant name + email, or another account-like key. */
  account: string;
  address: string;
}

/**
 * Failed-login throttling per account and per source address, with
 * exponential back-off: after the free attempts every further failure locks
 * the key for base × 2^n (capped). A locked attempt is refused with
 * RESOURCE_EXHAUSTED and `google.rpc.RetryInfo` saying when to come back.
 * When the counters are unreachable throttling is skipped (logged), not logins.
 */
export class LoginThrottle {
  constructor(private readonly counters: ThrottleCounters, private readonly policy: ThrottlePolicy, private readonly log: Logger) {}

  private scopes(subject: ThrottleSubject): Array<{ scope: ThrottleScope; free: number }> {
    return [
      { scope: { kind: 'account', id: subject.account }, free: this.policy.accountFreeAttempts },
      { scope: { kind: 'address', id: subject.address }, free: this.policy.addressFreeAttempts },
    ];
  }

  /** Throws RESOURCE_EXHAUSTED while the account or the address is locked out. */
  async check(subject: ThrottleSubject): Promise<void> {
    let waits: number[];
    try {
      waits = await this.counters.lockRemainingMs(this.scopes(subject).map((s) => s.scope));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'login throttling unavailable (redis)');
      return;
    }
    const retryAfterMs = Math.max(...waits);
    if (retryAfterMs > 0) throw errors.resourceExhausted(`too many failed attempts; retry in ${Math.ceil(retryAfterMs / 1000)} s`, retryAfterMs);
  }

  /** Counts a failure; returns the lock-out it caused (0 for none). */
  async failed(subject: ThrottleSubject): Promise<number> {
    try {
      let longest = 0;
      for (const { scope, free } of this.scopes(subject)) {
        const fails = await this.counters.countFailure(scope, this.policy.windowMs);
        if (fails > free) {
          const delay = Math.min(this.policy.baseDelayMs * 2 ** Math.min(fails - free - 1, 30), this.policy.maxDelayMs);
          await this.counters.lockOut(scope, delay);
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
    await this.counters.forget({ kind: 'account', id: subject.account }).catch(() => undefined);
  }
}
