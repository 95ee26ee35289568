import crypto from 'node:crypto';
import type { Redis } from '@iot-mesh/runtime';

/** One throttled key: an account (tenant + email, or another account-like key) or a source address. */
export interface ThrottleScope {
  kind: 'account' | 'address';
  id: string;
}

/** A scope with the attempts it gets before back-off starts. */
export interface ThrottledScope {
  scope: ThrottleScope;
  freeAttempts: number;
}

/** Back-off of {@link ThrottleCounters.attempt}: base × 2^n after the free attempts, capped; counts forgotten after the window. */
export interface BackOff {
  baseDelayMs: number;
  maxDelayMs: number;
  windowMs: number;
}

/** What counting an attempt found: refused while locked, else the lock-out each scope got from it (0: none). */
export type AttemptOutcome = { refused: true; retryAfterMs: number } | { refused: false; lockedForMs: number[] };

/** Attempt counters and lock-outs of login throttling. Errors mean the counters are unreachable. */
export interface ThrottleCounters {
  /**
   * In one atomic step: refuses when any scope is locked out; otherwise
   * counts the attempt in every scope (as a failure until {@link undo} says
   * otherwise) and locks out each scope whose count passed its free attempts.
   * Counting before the password is checked is what keeps a parallel burst
   * to the same number of guesses as a sequential one.
   */
  attempt(scopes: ThrottledScope[], backOff: BackOff): Promise<AttemptOutcome>;
  /** Takes back one counted attempt (it succeeded), and the lock-out it caused when `lockedByIt`. */
  undo(scope: ThrottleScope, lockedByIt: boolean): Promise<void>;
  /** Forgets the scope's attempts and lock-out. */
  forget(scope: ThrottleScope): Promise<void>;
}

/**
 * Refuses when locked (returns {0, longest wait}); else counts and locks
 * (returns {1, lock-out per scope}). KEYS: fails, lock per scope. ARGV:
 * window, base, max, then the free attempts per scope.
 */
const ATTEMPT_SCRIPT = `
local scopes = #KEYS / 2
local wait = 0
for i = 1, scopes do
  local ttl = redis.call('PTTL', KEYS[2 * i])
  if ttl > wait then wait = ttl end
end
if wait > 0 then return {0, wait} end
local out = {1}
for i = 1, scopes do
  local fails = redis.call('INCR', KEYS[2 * i - 1])
  redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[1])
  local free = tonumber(ARGV[3 + i])
  local delay = 0
  if fails > free then
    delay = math.floor(math.min(tonumber(ARGV[2]) * 2 ^ math.min(fails - free - 1, 30), tonumber(ARGV[3])))
    redis.call('SET', KEYS[2 * i], '1', 'PX', delay)
  end
  out[#out + 1] = delay
end
return out
`;

/** Takes one attempt back, never below zero. KEYS: fails, lock. ARGV: '1' to delete the lock too. */
const UNDO_SCRIPT = `
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
if ARGV[1] == '1' then redis.call('DEL', KEYS[2]) end
return 0
`;

/**
 * {@link ThrottleCounters} in Redis: `<prefix>fails:<acct|addr>:<digest>`
 * counts attempts, `<prefix>lock:…` is set while locked out. Every id is
 * hashed to a fixed length (account ids contain email addresses, and no
 * client text makes a key longer), and every key expires.
 */
export class RedisThrottleCounters implements ThrottleCounters {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  private keysOf(scope: ThrottleScope): [fails: string, lock: string] {
    const id = crypto.createHash('sha256').update(scope.kind === 'account' ? scope.id.toLowerCase() : scope.id).digest('hex').slice(0, 32);
    const kind = scope.kind === 'account' ? 'acct' : 'addr';
    return [`${this.prefix}fails:${kind}:${id}`, `${this.prefix}lock:${kind}:${id}`];
  }

  async attempt(scopes: ThrottledScope[], backOff: BackOff): Promise<AttemptOutcome> {
    const keys = scopes.flatMap((s) => this.keysOf(s.scope));
    const args = [backOff.windowMs, backOff.baseDelayMs, backOff.maxDelayMs, ...scopes.map((s) => s.freeAttempts)];
    const [counted, ...rest] = (await this.redis.eval(ATTEMPT_SCRIPT, keys.length, ...keys, ...args)) as number[];
    return counted === 0 ? { refused: true, retryAfterMs: rest[0] } : { refused: false, lockedForMs: rest };
  }

  async undo(scope: ThrottleScope, lockedByIt: boolean): Promise<void> {
    await this.redis.eval(UNDO_SCRIPT, 2, ...this.keysOf(scope), lockedByIt ? '1' : '0');
  }

  async forget(scope: ThrottleScope): Promise<void> {
    await this.redis.del(...this.keysOf(scope));
  }
}
