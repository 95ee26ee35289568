import { KeyObject } from 'node:crypto';
import { errors } from '../errors';
import { Logger } from '../logger';
import type { Redis } from '../redis';
import { keyFromJwk, PublicJwk } from './jwt';

/**
 * Where the auth middleware finds the public key of a token's `kid`. Services
 * use {@link JwksKeySource} (signing's published JWKS, cached); the signing
 * service plugs in its own key store.
 */
export interface KeySource {
  /** The verification key of `kid`; undefined when it is unknown or retired. */
  keyFor(kid: string): Promise<KeyObject | undefined>;
}

/** Options of a {@link JwksKeySource}. */
export interface JwksKeySourceOptions {
  /** After this long the set is fetched again on the next verification (default 60 s). */
  maxAgeMs?: number;
  /**
   * An unknown `kid` triggers a fetch at most this often (default 5 s), so
   * tokens with made-up key ids cannot make every call hit the network.
   */
  minRefreshIntervalMs?: number;
  log?: Logger;
}

/**
 * A JWKS held in memory: fetched on first use, again when older than
 * `maxAgeMs`, and when a token names a key it does not know (rate-limited).
 * Verifying a token never waits for the network otherwise. Keys that
 * disappear from the published set (retired) are forgotten at the next fetch.
 */
export class JwksKeySource implements KeySource {
  private keys = new Map<string, KeyObject>();
  private fetchedAt = 0;
  private lastAttemptAt = 0;
  private inflight?: Promise<void>;
  private readonly maxAgeMs: number;
  private readonly minRefreshIntervalMs: number;

  /**
   * @param fetchJwks fetches the published set; `fresh` is true when a token
   *   named a key the set lacks, so no shared cache may answer.
   */
  constructor(private readonly fetchJwks: (fresh: boolean) => Promise<Array<Partial<PublicJwk>>>, private readonly options: JwksKeySourceOptions = {}) {
    this.maxAgeMs = options.maxAgeMs ?? 60_000;
    this.minRefreshIntervalMs = options.minRefreshIntervalMs ?? 5_000;
  }

  async keyFor(kid: string): Promise<KeyObject | undefined> {
    const now = Date.now();
    if (this.fetchedAt === 0) {
      await this.refresh(true);
    } else if (now - this.fetchedAt > this.maxAgeMs) {
      await this.refresh(false);
    } else if (!this.keys.has(kid) && now - this.lastAttemptAt >= this.minRefreshIntervalMs) {
      await this.refresh(false, true);
    }
    return this.keys.get(kid);
  }

  /** Fetches the set now (single flight). With `required`, failure is UNAVAILABLE; otherwise the old set stays. */
  async refresh(required = false, fresh = false): Promise<void> {
    this.inflight ??= (async () => {
      this.lastAttemptAt = Date.now();
      try {
        const jwks = await this.fetchJwks(fresh);
        const next = new Map<string, KeyObject>();
        for (const jwk of jwks) {
          const key = jwk.kid ? keyFromJwk(jwk) : undefined;
          if (key && jwk.kid) next.set(jwk.kid, key);
        }
        this.keys = next;
        this.fetchedAt = Date.now();
      } catch (err) {
        this.options.log?.warn({ err: (err as Error).message }, 'fetching the JWKS failed');
        throw err;
      } finally {
        this.inflight = undefined;
      }
    })();
    try {
      await this.inflight;
    } catch (err) {
      if (required || this.fetchedAt === 0) throw errors.unavailable('the signing service is unreachable; cannot verify tokens', err);
    }
  }
}

/** Options of {@link sharedJwksFetcher}. */
export interface SharedJwksOptions {
  /** Redis key of the shared copy (default `iot:auth:jwks`). */
  key?: string;
  /** How long the shared copy is used (default 30 s). */
  ttlMs?: number;
  log?: Logger;
}

/**
 * Puts a Redis copy of the JWKS in front of `fetchJwks`, so replicas of a
 * service share one fetch and can verify tokens while signing restarts. A
 * fetch for an unknown `kid` always goes to signing and refreshes the copy.
 */
export function sharedJwksFetcher(
  fetchJwks: () => Promise<Array<Partial<PublicJwk>>>,
  redis: Pick<Redis, 'get' | 'set'>,
  options: SharedJwksOptions = {},
): (fresh: boolean) => Promise<Array<Partial<PublicJwk>>> {
  const key = options.key ?? 'iot:auth:jwks';
  const ttlMs = options.ttlMs ?? 30_000;
  return async (fresh) => {
    if (!fresh) {
      try {
        const cached = await redis.get(key);
        if (cached) return JSON.parse(cached) as Array<Partial<PublicJwk>>;
      } catch (err) {
        options.log?.debug({ err: (err as Error).message }, 'shared JWKS cache unavailable');
      }
    }
    const jwks = await fetchJwks();
    await redis.set(key, JSON.stringify(jwks), 'PX', ttlMs).catch(() => undefined);
    return jwks;
  };
}
