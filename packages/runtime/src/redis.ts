import { Redis } from 'ioredis';
import { Logger, redactUrl } from './logger';

export { Redis };

/**
 * A Redis client that fails fast instead of queueing while Redis is down, so
 * callers can fall back to the database (Redis is never the only copy).
 */
export function createRedis(url: string, log: Logger): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  });
  let down = false;
  redis.on('error', (err: Error) => {
    if (!down) log.warn({ err: err.message, redis: redactUrl(url) }, 'redis unavailable');
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.info('redis available again');
    down = false;
  });
  return redis;
}
