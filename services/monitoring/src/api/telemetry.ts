import { setTimeout as sleep } from 'node:timers/promises';
import type { Duration } from '../../../gen/ts/google/protobuf/duration';
import { Aggregation, Series, TelemetryServiceService } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { callerTenant, decodePageToken, defineService, encodePageToken, isSubjectToken, pageSize, ServiceRegistration, Violations } from '@iot-mesh/runtime';
import { METRIC_NAME } from './ingest/decode';
import type { LiveHub } from './live/live-hub';
import { toDataPoint } from './points';
import type { AggregationKind, PointCursor, TelemetryStore } from './store/telemetry-store';

const AGGREGATIONS: Partial<Record<Aggregation, AggregationKind>> = {
  [Aggregation.AGGREGATION_MIN]: 'min',
  [Aggregation.AGGREGATION_MAX]: 'max',
  [Aggregation.AGGREGATION_AVG]: 'avg',
  [Aggregation.AGGREGATION_SUM]: 'sum',
  [Aggregation.AGGREGATION_COUNT]: 'count',
  [Aggregation.AGGREGATION_LAST]: 'last',
};
const DEFAULT_MAX_POINTS = 1000;
const MAX_BUCKETS = 10_000;
const MAX_METRICS = 50;
const LATEST_LIMIT = 1000;
const DAY_MS = 86_400_000;

export function durationMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

export function msDuration(ms: number): Duration {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

function checkDevice(v: Violations, deviceId: string, field = 'device_id'): void {
  if (v.required(deviceId, field)) v.check(isSubjectToken(deviceId), field, 'is not a valid device id');
}

function checkMetrics(v: Violations, metrics: string[], field = 'metrics'): void {
  v.check(metrics.length <= MAX_METRICS, field, `at most ${MAX_METRICS} metrics`);
  metrics.forEach((m, i) => v.check(METRIC_NAME.test(m), `${field}[${i}]`, 'is not a valid metric name'));
}

/** Resolves a request's time range: defaults end = now, start = end − `defaultSpanMs`. */
function timeRange(v: Violations, range: { start?: Date; end?: Date } | undefined, defaultSpanMs: number): { start: Date; end: Date } {
  const end = range?.end ?? new Date();
  const start = range?.start ?? new Date(end.getTime() - defaultSpanMs);
  v.check(start.getTime() < end.getTime(), 'time_range', 'start must be before end');
  return { start, end };
}

export interface TelemetryHandlerDeps {
  store: TelemetryStore;
  live: LiveHub;
  frameMs: number;
}

/** TelemetryService: request → validation → store or live hub → response, scoped to the caller's tenant. */
export function telemetryService({ store, live, frameMs }: TelemetryHandlerDeps): ServiceRegistration {
  return defineService(TelemetryServiceService, {
    async getLatest(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      v.check(request.deviceIds.length <= LATEST_LIMIT, 'device_ids', `at most ${LATEST_LIMIT} devices`);
      request.deviceIds.forEach((d, i) => checkDevice(v, d, `device_ids[${i}]`));
      checkMetrics(v, request.metrics);
      v.throwIfAny();
      const points = await store.latest(tenantId, request.deviceIds, request.metrics, LATEST_LIMIT);
      return { points: points.map(toDataPoint) };
    },

    async queryHistory(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      checkDevice(v, request.deviceId);
      v.check(request.metrics.length > 0, 'metrics', 'at least one metric');
      checkMetrics(v, request.metrics);
      const { start, end } = timeRange(v, request.timeRange, DAY_MS);
      const span = end.getTime() - start.getTime();
      const explicit = durationMs(request.bucketWidth);
      let bucketMs: number;
      let origin: Date;
      if (explicit !== undefined) {
        v.check(explicit >= 1, 'bucket_width', 'must be at least 1 ms');
        v.check(explicit < 1 || span / explicit <= MAX_BUCKETS, 'bucket_width', `gives more than ${MAX_BUCKETS} buckets for this time range`);
        bucketMs = Math.max(1, explicit);
        origin = new Date(0); // explicit widths align to whole multiples (minutes on the minute)
      } else {
        v.check(request.maxPoints >= 0 && request.maxPoints <= MAX_BUCKETS, 'max_points', `must be 0..${MAX_BUCKETS}`);
        const maxPoints = request.maxPoints || DEFAULT_MAX_POINTS;
        bucketMs = Math.max(1, Math.ceil(span / maxPoints));
        origin = start; // aligned to the range so there are at most max_points buckets
      }
      const requested = request.aggregations.length > 0 ? request.aggregations : [Aggregation.AGGREGATION_AVG];
      requested.forEach((a, i) => v.check(AGGREGATIONS[a] !== undefined, `aggregations[${i}]`, 'is not a supported aggregation'));
      v.throwIfAny();
      const kinds = requested.map((a) => AGGREGATIONS[a]!);
      const result = await store.history({ tenantId, deviceId: request.deviceId, metrics: [...new Set(request.metrics)], start, end, bucketMs, origin, aggregations: kinds });
      const series: Series[] = [];
      for (const s of result) {
        requested.forEach((aggregation, i) => {
          series.push({
            metric: s.metric,
            aggregation,
            buckets: s.buckets.map((b) => ({ startTime: b.start, value: b.values[kinds[i]], count: b.count })),
          });
        });
      }
      return { series, bucketWidth: msDuration(bucketMs) };
    },

    async listPoints(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      checkDevice(v, request.deviceId);
      checkMetrics(v, request.metrics);
      const { start, end } = timeRange(v, request.timeRange, DAY_MS);
      v.throwIfAny();
      const limit = pageSize(request.page?.pageSize, 100, 1000);
      const token = decodePageToken(request.page?.pageToken);
      let after: PointCursor | undefined;
      if (token) {
        const [time, metric, messageId, pointIndex] = token;
        if (typeof time !== 'string' || typeof metric !== 'string' || typeof messageId !== 'string' || typeof pointIndex !== 'number' || Number.isNaN(Date.parse(time))) {
          decodePageToken('!', 'page.page_token'); // throws the standard INVALID_ARGUMENT
        }
        after = { time: new Date(time as string), metric: metric as string, messageId: messageId as string, pointIndex: pointIndex as number };
      }
      const page = await store.points({ tenantId, deviceId: request.deviceId, metrics: request.metrics, start, end, after, limit });
      const next = page.next ? encodePageToken([page.next.time.toISOString(), page.next.metric, page.next.messageId, page.next.pointIndex]) : '';
      return { points: page.points.map(toDataPoint), page: { nextPageToken: next } };
    },

    async streamLive(request, ctx, send) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      request.deviceIds.forEach((d, i) => checkDevice(v, d, `device_ids[${i}]`));
      checkMetrics(v, request.metrics);
      v.throwIfAny();
      const client = live.open(tenantId, { deviceIds: new Set(request.deviceIds), labels: request.labels, metrics: new Set(request.metrics) });
      try {
        await live.flush();
        // An empty first frame tells the client the subscription is in place.
        await send({ points: [], droppedPoints: 0n });
        while (!ctx.signal.aborted) {
          await client.ready(ctx.signal);
          if (ctx.signal.aborted) break;
          const started = Date.now();
          const frame = client.take();
          await send(frame);
          live.stats.framesSent++;
          live.stats.onFrame?.();
          const wait = frameMs - (Date.now() - started);
          if (wait > 0) await sleep(wait, undefined, { signal: ctx.signal }).catch(() => undefined);
        }
      } finally {
        client.close();
      }
    },
  });
}
