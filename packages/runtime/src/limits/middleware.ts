import { GrpcCode, ServiceError } from '../errors';
import { Logger } from '../logger';
import { metrics } from '../observability/metrics-registry';
import type { Redis } from '../redis';
import type { Middleware } from '../rpc';
import { ConfigOf } from '../config';
import { limitsEnv } from './env';
import { SharedStreamCounts } from './stream-leases';
import { BucketSettings, LeasedBuckets, LocalBuckets, Take } from './token-bucket';

/** Options of {@link createLimitsMiddleware}. */
export interface LimitsMiddlewareOptions {
  settings: ConfigOf<typeof limitsEnv>;
  /** Holds the per-tenant buckets shared by replicas; without it (or while it is down) each process counts alone. */
  redis?: Redis;
  /** Prefix of the bucket keys; default `iot:limits:`. */
  redisPrefix?: string;
  log: Logger;
}

const rejected = metrics.counter('iot_limits_rejected_total', 'Calls refused with RESOURCE_EXHAUSTED by a per-caller limit.', ['limit']);
const fallbacks = metrics.counter('iot_limits_local_fallback_total', 'Rate checks answered by the in-process bucket because Redis did not answer (fail open).');
const openStreams = metrics.gauge('iot_limits_open_streams', 'Server streams currently open, as counted for the per-caller caps.');

/** Counts of open streams by key, freed when they reach zero. */
class StreamCounts {
  private readonly counts = new Map<string, number>();
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  add(key: string, delta: number): void {
    const next = this.get(key) + delta;
    if (next <= 0) this.counts.delete(key);
    else this.counts.set(key, next);
  }
}

/**
 * Limits a client can act on, enforced after the auth middleware (it reads
 * `ctx.principal`; public calls pass):
 * - per-tenant call rate: a token bucket in Redis shared by every replica of
 *   every service, taken in leases of a few tokens ({@link LeasedBuckets}),
 *   RESOURCE_EXHAUSTED with `google.rpc.RetryInfo` saying when a token is back. While Redis does not answer, each process keeps its
 *   own bucket (fail open, counted in `iot_limits_local_fallback_total`).
 * - open server streams per principal over every replica and service (a
 *   lease per stream in Redis, {@link SharedStreamCounts}; counted in this
 *   process while Redis does not answer) and per client connection (in this
 *   process: a connection is to one) → RESOURCE_EXHAUSTED (reason
 *   `TOO_MANY_STREAMS`), freed when the stream ends.
 */
export function createLimitsMiddleware(options: LimitsMiddlewareOptions): Middleware {
  const { settings, redis, log } = options;
  const prefix = options.redisPrefix ?? 'iot:limits:';
  const bucket: BucketSettings = { ratePerS: settings.API_RATE_PER_TENANT, burst: Math.max(1, settings.API_BURST_PER_TENANT) };
  const local = new LocalBuckets();
  const shared = redis ? new LeasedBuckets(redis, bucket) : undefined;
  const streams = new StreamCounts();
  const sharedStreams = redis ? new SharedStreamCounts(redis) : undefined;
  let warned = false;

  async function take(tenantId: string): Promise<Take> {
    if (shared && redis?.status === 'ready') {
      try {
        const taken = await shared.take(`${prefix}rate:${tenantId}`);
        warned = false;
        return taken;
      } catch (err) {
        if (!warned) log.warn({ err: (err as Error).message }, 'rate limiting per process: redis did not answer');
        warned = true;
      }
    }
    if (redis) fallbacks.inc();
    return local.take(tenantId, bucket);
  }

  /** A lease on one of the principal's streams over every replica: its id, 'refused' at the limit, undefined when only this process can count (no Redis, or it did not answer). */
  async function leaseStream(byPrincipal: string): Promise<string | 'refused' | undefined> {
    if (!sharedStreams || redis?.status !== 'ready') return undefined;
    try {
      return (await sharedStreams.open(`${prefix}streams:${byPrincipal}`, settings.STREAMS_PER_PRINCIPAL)) ?? 'refused';
    } catch (err) {
      if (!warned) log.warn({ err: (err as Error).message }, 'counting streams per process: redis did not answer');
      warned = true;
      return undefined;
    }
  }

  return async (ctx, _request, next) => {
    const principal = ctx.principal;
    if (!principal) return next();
    const taken = await take(principal.tenantId);
    if (!taken.allowed) {
      rejected.inc({ limit: 'tenant_rate' });
      throw new ServiceError(GrpcCode.RESOURCE_EXHAUSTED, `tenant call rate above ${bucket.ratePerS}/s: retry after ${taken.retryAfterMs} ms`, {
        retryAfterMs: taken.retryAfterMs,
        reason: 'TENANT_RATE_LIMITED',
      });
    }
    if (ctx.kind !== 'server_stream') return next();
    const byPrincipal = `${principal.tenantId}/${principal.kind}/${principal.id}`;
    const byConnection = ctx.peer;
    const tooManyForCaller = () => {
      rejected.inc({ limit: 'streams_per_principal' });
      return new ServiceError(GrpcCode.RESOURCE_EXHAUSTED, `at most ${settings.STREAMS_PER_PRINCIPAL} open streams per caller: close one first`, { reason: 'TOO_MANY_STREAMS' });
    };
    if (streams.get(byConnection) >= settings.STREAMS_PER_CONNECTION) {
      rejected.inc({ limit: 'streams_per_connection' });
      throw new ServiceError(GrpcCode.RESOURCE_EXHAUSTED, `at most ${settings.STREAMS_PER_CONNECTION} open streams per connection: close one first`, { reason: 'TOO_MANY_STREAMS' });
    }
    const lease = await leaseStream(byPrincipal);
    if (lease === 'refused' || (lease === undefined && streams.get(byPrincipal) >= settings.STREAMS_PER_PRINCIPAL)) throw tooManyForCaller();
    streams.add(byPrincipal, 1);
    streams.add(byConnection, 1);
    openStreams.inc();
    try {
      return await next();
    } finally {
      // The shared lease first: once this process counts the stream gone, every replica does.
      if (lease !== undefined) await sharedStreams!.close(lease);
      streams.add(byPrincipal, -1);
      streams.add(byConnection, -1);
      openStreams.dec();
    }
  };
}
