import net from 'node:net';
import { errors, Logger } from '@iot-mesh/runtime';
import type { ThrottleCounters, ThrottledScope } from '../store/throttle-counters';

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

/** One attempt let through: counted as a failure unless {@link ThrottleAttempt.succeeded} is called. */
export interface ThrottleAttempt {
  /** The longest lock-out this attempt caused (it counts as a failure until it succeeds). */
  lockedForMs: number;
  /** The secret was right: forgets the account's failures and takes the attempt back from the address. */
  succeeded(): Promise<void>;
}

/**
 * The throttling key of an address: IPv6 clients get whole /64s, so one
 * client cannot spread its guesses (or its Redis keys) over 2^64 addresses.
 */
export function throttledAddress(address: string): string {
  if (!net.isIPv6(address)) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  const [head, tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/**
 * Failed-login throttling per account and per source address, with
 * exponential back-off: after the free attempts every further failure locks
 * the key for base × 2^n (capped). A locked attempt is refused with
 * RESOURCE_EXHAUSTED and `google.rpc.RetryInfo` saying when to come back.
 * The attempt is counted before the secret is checked, in one atomic step
 * with the lock check, so parallel attempts get no more guesses than
 * sequential ones. When the counters are unreachable throttling is skipped
 * (logged), not logins.
 */
export class LoginThrottle {
  constructor(private readonly counters: ThrottleCounters, private readonly policy: ThrottlePolicy, private readonly log: Logger) {}

  private scopes(subject: ThrottleSubject): ThrottledScope[] {
    return [
      { scope: { kind: 'account', id: subject.account }, freeAttempts: this.policy.accountFreeAttempts },
      { scope: { kind: 'address', id: throttledAddress(subject.address) }, freeAttempts: this.policy.addressFreeAttempts },
    ];
  }

  /** Counts an attempt; throws RESOURCE_EXHAUSTED while the account or the address is locked out. */
  async attempt(subject: ThrottleSubject): Promise<ThrottleAttempt> {
    const [account, address] = this.scopes(subject);
    let outcome;
    try {
      outcome = await this.counters.attempt([account, address], this.policy);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'login throttling unavailable (redis)');
      return { lockedForMs: 0, succeeded: async () => undefined };
    }
    if (outcome.refused) throw errors.resourceExhausted(`too many failed attempts; retry in ${Math.ceil(outcome.retryAfterMs / 1000)} s`, outcome.retryAfterMs);
    const [, addressLock] = outcome.lockedForMs;
    return {
      lockedForMs: Math.max(...outcome.lockedForMs),
      succeeded: async () => {
        await Promise.all([this.counters.forget(account.scope), this.counters.undo(address.scope, addressLock > 0)]).catch((err: Error) =>
          this.log.warn({ err: err.message }, 'login throttling unavailable (redis)'),
        );
      },
    };
  }
}
