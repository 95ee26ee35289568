import crypto from 'node:crypto';
import { Logger } from '../logger';
import { metrics } from '../observability/metrics-registry';
import { Redis } from '../redis';
import { Principal } from './principal';

/**
 * Turns an API key secret into its principal; undefined when the key is
 * unknown, revoked or expired. Throws (UNAVAILABLE) when it cannot tell.
 */
export type ApiKeyLookup = (secret: string) => Promise<Principal | undefined>;

/** Options of {@link cachedApiKeyLookup}. */
export interface ApiKeyCacheOptions {
  /** How long a valid key's principal is reused (default 30 s): the revocation delay. */
  ttlMs?: number;
  /** How long an invalid key stays known as invalid (default 5 s). */
  negativeTtlMs?: number;
  /** Shared cache across replicas, besides the in-memory one. */
  redis?: Redis;
  redisPrefix?: string;
  maxEntries?: number;
  log?: Logger;
}

const INVALID = 'invalid';

/** API-key verifications started (past the in-memory cache): one per key at a time, however many callers wait for it. */
const lookups = () => metrics.counter('iot_auth_api_key_lookups_total', 'API-key verifications started past the in-memory cache (concurrent ones of the same key share one).', []);

/** The SHA-256 of a secret, hex: the key of every copy, so the secret itself is never kept. */
function digestOf(secret: string): string {
  return crypto.createHash('sha256').update(secret).digest('hex');
}

/**
 * One verification per key at a time: callers presenting the same secret
 * while it is being verified (a client opening many calls at once, each a
 * cache miss) share its answer instead of each hashing it and asking the
 * store. Keyed by the SHA-256 of the secret; nothing is kept once it settles.
 */
export function singleFlightApiKeyLookup(lookup: ApiKeyLookup): ApiKeyLookup {
  const inFlight = new Map<string, Promise<Principal | undefined>>();
  return (secret) => {
    const digest = digestOf(secret);
    let flight = inFlight.get(digest);
    if (!flight) {
      lookups().inc();
      flight = lookup(secret).finally(() => inFlight.delete(digest));
      inFlight.set(digest, flight);
    }
    return flight;
  };
}

/**
 * Caches an {@link ApiKeyLookup} in memory (and in Redis when given), keyed
 * by the SHA-256 of the secret so the secret itself is never stored. A
 * revoked key keeps working for at most `ttlMs` at a service with a cache.
 */
export function cachedApiKeyLookup(lookup: ApiKeyLookup, options: ApiKeyCacheOptions = {}): ApiKeyLookup {
  const ttlMs = options.ttlMs ?? 30_000;
  const negativeTtlMs = options.negativeTtlMs ?? 5_000;
  const maxEntries = options.maxEntries ?? 10_000;
  const prefix = options.redisPrefix ?? 'iot:auth:apikey:';
  const memory = new Map<string, { principal?: Principal; until: number }>();
  // Concurrent misses of one key: one Redis read, one lookup.
  const miss = singleFlightApiKeyLookup((secret) => lookupAndRemember(secret, digestOf(secret)));

  return async (secret) => {
    const digest = digestOf(secret);
    const now = Date.now();
    const hit = memory.get(digest);
    if (hit && hit.until > now) return hit.principal;
    if (hit) memory.delete(digest);
    return miss(secret);
  };

  async function lookupAndRemember(secret: string, digest: string): Promise<Principal | undefined> {
    if (options.redis) {
      try {
        const cached = await options.redis.get(prefix + digest);
        if (cached) {
          const principal = cached === INVALID ? undefined : (JSON.parse(cached) as Principal);
          remember(digest, principal, principal ? ttlMs : negativeTtlMs);
          return principal;
        }
      } catch (err) {
        options.log?.debug({ err: (err as Error).message }, 'api key cache unavailable');
      }
    }

    const principal = await lookup(secret);
    remember(digest, principal, principal ? ttlMs : negativeTtlMs);
    if (options.redis) {
      options.redis
        .set(prefix + digest, principal ? JSON.stringify(principal) : INVALID, 'PX', principal ? ttlMs : negativeTtlMs)
        .catch(() => undefined);
    }
    return principal;
  }

  function remember(digest: string, principal: Principal | undefined, forMs: number): void {
    if (memory.size >= maxEntries) {
      // Drop the oldest entry (Map keeps insertion order).
      const oldest = memory.keys().next().value;
      if (oldest !== undefined) memory.delete(oldest);
    }
    memory.set(digest, { principal, until: Date.now() + forMs });
  }
}
