import { metrics } from './metrics-registry';

/** Caches in Redis (device lookups, JWKS, API keys). Hit ratio = hits / (hits + misses). */
function cacheMetrics() {
  return {
    /** Cache lookups by cache name and result (`hit`, `miss`, `error`). */
    requests: metrics.counter('iot_cache_requests_total', 'Cache lookups by cache and result (hit, miss, error).', ['cache', 'result']),
  };
}

type AsyncMethodKeys<T> = { [K in keyof T]: T[K] extends (...args: any[]) => Promise<unknown> ? K : never }[keyof T];

/**
 * Counts a cache's lookups as `iot_cache_requests_total{cache, result}` by
 * wrapping its read method on this instance (a decorator applied in
 * `main.ts`, so the cache itself stays free of metrics): a result of
 * `undefined` or `null` is a `miss`, anything else a `hit`, a rejection an
 * `error`. Both outcomes are exported at zero from the start.
 */
export function countCacheLookups<T extends object>(target: T, method: AsyncMethodKeys<T>, cache: string): T {
  const { requests } = cacheMetrics();
  requests.inc({ cache, result: 'hit' }, 0);
  requests.inc({ cache, result: 'miss' }, 0);
  const original = (target[method] as (...args: unknown[]) => Promise<unknown>).bind(target);
  const counted = async (...args: unknown[]): Promise<unknown> => {
    try {
      const value = await original(...args);
      requests.inc({ cache, result: value === undefined || value === null ? 'miss' : 'hit' });
      return value;
    } catch (err) {
      requests.inc({ cache, result: 'error' });
      throw err;
    }
  };
  (target as Record<PropertyKey, unknown>)[method as PropertyKey] = counted;
  return target;
}
