import type { Duration } from '../../../../gen/ts/google/protobuf/duration';
import { DataPoint, StreamLiveResponse, TelemetryServiceService } from '../../../../gen/ts/iot/monitoring/v1/telemetry';
import {
  callerTenant,
  decodePageToken,
  defineService,
  durationToMs,
  encodePageToken,
  errors,
  isSubjectToken,
  METRIC_NAME,
  msToDuration,
  pageSize,
  ServiceRegistration,
  Violations,
} from '@iot-mesh/runtime';
import type { LiveFrame, LiveHub } from '../domain/live';
import { AGGREGATIONS, GROUP_ID, LATEST_LIMIT, MAX_GROUP_BUCKETS, MAX_GROUPS, MAX_BUCKETS, MAX_METRICS, TelemetryQueries } from '../domain/telemetry';
import type { PointCursor } from '../store/telemetry-store';
import { resolveTimeRange } from './time-range';

function checkDevice(v: Violations, deviceId: string, field = 'device_id'): void {
  if (v.required(deviceId, field)) v.check(isSubjectToken(deviceId), field, 'is not a valid device id');
}

/** At most MAX_GROUPS group ids, each a group id. */
function checkGroups(v: Violations, groupIds: string[], field = 'group_ids'): void {
  v.check(groupIds.length <= MAX_GROUPS, field, `at most ${MAX_GROUPS} groups`);
  groupIds.forEach((g, i) => v.check(GROUP_ID.test(g), `${field}[${i}]`, 'is not a group id'));
}

function checkMetrics(v: Violations, metrics: string[], field = 'metrics'): void {
  v.check(metrics.length <= MAX_METRICS, field, `at most ${MAX_METRICS} metrics`);
  metrics.forEach((m, i) => v.check(METRIC_NAME.test(m), `${field}[${i}]`, 'is not a valid metric name'));
}

/** The bucket width asked for (undefined: the server picks one under max_points), checked against `most` buckets over `spanMs`. */
function checkBuckets(v: Violations, request: { bucketWidth?: Duration; maxPoints: number }, spanMs: number, most: number): number | undefined {
  const bucketWidthMs = durationToMs(request.bucketWidth);
  if (bucketWidthMs !== undefined) {
    v.check(bucketWidthMs >= 1, 'bucket_width', 'must be at least 1 ms');
    v.check(bucketWidthMs < 1 || spanMs / bucketWidthMs <= most, 'bucket_width', `gives more than ${most} buckets for this time range`);
  } else {
    v.check(request.maxPoints >= 0 && request.maxPoints <= most, 'max_points', `must be 0..${most}`);
  }
  return bucketWidthMs;
}

/** The keyset cursor inside a ListPoints page token, or the standard INVALID_ARGUMENT. */
function pointCursor(pageToken: string | undefined): PointCursor | undefined {
  const token = decodePageToken(pageToken);
  if (!token) return undefined;
  const [time, metric, messageId, pointIndex] = token;
  if (typeof time !== 'string' || typeof metric !== 'string' || typeof messageId !== 'string' || typeof pointIndex !== 'number' || Number.isNaN(Date.parse(time))) {
    decodePageToken('!', 'page.page_token'); // throws the standard INVALID_ARGUMENT
  }
  return { time: new Date(time as string), metric: metric as string, messageId: messageId as string, pointIndex: pointIndex as number };
}

/** Encodes a message's points once as a `StreamLiveResponse` fragment that every stream wanting them shares. */
export function encodeLiveFragment(points: DataPoint[]): Uint8Array {
  return StreamLiveResponse.encode({ points, droppedPoints: 0n }).finish();
}

/**
 * A frame's wire bytes: its shared fragments back to back (concatenated
 * Protobuf messages merge, repeated points append), then the dropped count.
 * A frame of one fragment is that fragment's bytes, not a copy.
 */
export function liveFrameBytes(frame: LiveFrame): Buffer {
  const parts = frame.chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  if (frame.droppedPoints > 0) parts.push(Buffer.from(StreamLiveResponse.encode({ points: [], droppedPoints: BigInt(frame.droppedPoints) }).finish()));
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

/**
 * The generated definition with StreamLive's serializer bypassed: live frames
 * are written as bytes already encoded (shared between streams), not re-encoded per call.
 */
const telemetryDefinition = {
  ...TelemetryServiceService,
  streamLive: { ...TelemetryServiceService.streamLive, responseSerialize: (frame: Buffer): Buffer => frame },
};

/** What the TelemetryService handlers call. */
export interface TelemetryHandlerDeps {
  queries: TelemetryQueries;
  live: LiveHub;
}

/** TelemetryService: decode → validate → telemetry queries or live hub → encode, scoped to the caller's tenant. */
export function telemetryService({ queries, live }: TelemetryHandlerDeps): ServiceRegistration {
  return defineService(telemetryDefinition, {
    async getLatest(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      v.check(request.deviceIds.length <= LATEST_LIMIT, 'device_ids', `at most ${LATEST_LIMIT} devices`);
      request.deviceIds.forEach((d, i) => checkDevice(v, d, `device_ids[${i}]`));
      checkMetrics(v, request.metrics);
      v.throwIfAny();
      return { points: await queries.latest(tenantId, request.deviceIds, request.metrics) };
    },

    async queryHistory(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      checkDevice(v, request.deviceId);
      v.check(request.metrics.length > 0, 'metrics', 'at least one metric');
      checkMetrics(v, request.metrics);
      const { start, end } = resolveTimeRange(v, request.timeRange, queries.maxHistorySpanMs);
      const bucketWidthMs = checkBuckets(v, request, end.getTime() - start.getTime(), MAX_BUCKETS);
      request.aggregations.forEach((a, i) => v.check(AGGREGATIONS[a] !== undefined, `aggregations[${i}]`, 'is not a supported aggregation'));
      v.throwIfAny();
      const result = await queries.history({
        tenantId,
        deviceId: request.deviceId,
        metrics: request.metrics,
        start,
        end,
        bucketWidthMs,
        maxPoints: request.maxPoints,
        aggregations: request.aggregations,
      });
      return { series: result.series, bucketWidth: msToDuration(result.bucketWidthMs) };
    },

    async queryGroupHistory(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      if (v.required(request.groupId, 'group_id')) v.check(GROUP_ID.test(request.groupId), 'group_id', 'is not a group id');
      if (request.deviceType) v.check(isSubjectToken(request.deviceType), 'device_type', 'is not a device type name');
      if (v.required(request.metric, 'metric')) v.check(METRIC_NAME.test(request.metric), 'metric', 'is not a valid metric name');
      const { start, end } = resolveTimeRange(v, request.timeRange, queries.maxHistorySpanMs);
      const bucketWidthMs = checkBuckets(v, request, end.getTime() - start.getTime(), MAX_GROUP_BUCKETS);
      v.throwIfAny();
      const result = await queries.groupHistory({
        tenantId,
        groupId: request.groupId,
        deviceType: request.deviceType,
        metric: request.metric,
        start,
        end,
        bucketWidthMs,
        maxPoints: request.maxPoints,
        perDevice: request.perDevice,
      });
      return { buckets: result.buckets, devices: result.devices, bucketWidth: msToDuration(result.bucketWidthMs), memberCount: result.memberCount };
    },

    async listPoints(request, ctx) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      checkDevice(v, request.deviceId);
      checkMetrics(v, request.metrics);
      const { start, end } = resolveTimeRange(v, request.timeRange, queries.maxHistorySpanMs);
      v.throwIfAny();
      const limit = pageSize(request.page?.pageSize, 100, 1000);
      const after = pointCursor(request.page?.pageToken);
      const page = await queries.points({ tenantId, deviceId: request.deviceId, metrics: request.metrics, start, end, after, limit });
      const next = page.next ? encodePageToken([page.next.time.toISOString(), page.next.metric, page.next.messageId, page.next.pointIndex]) : '';
      return { points: page.points, page: { nextPageToken: next } };
    },

    async streamLive(request, ctx, send) {
      const tenantId = callerTenant(ctx);
      const v = new Violations();
      request.deviceIds.forEach((d, i) => checkDevice(v, d, `device_ids[${i}]`));
      checkMetrics(v, request.metrics);
      checkGroups(v, request.groupIds);
      v.check(request.groupIds.length === 0 || request.deviceIds.length === 0, 'group_ids', 'name devices or groups, not both');
      v.throwIfAny();
      const missing = live.unknownGroup(tenantId, request.groupIds);
      if (missing) throw errors.notFound('group', missing);
      const client = live.open(tenantId, { deviceIds: new Set(request.deviceIds), labels: request.labels, groupIds: request.groupIds, metrics: new Set(request.metrics) });
      try {
        // An empty first frame (an empty message encodes as no bytes) tells the client the subscription is in place.
        await send(Buffer.alloc(0));
        // No fixed delay: a frame goes out as soon as the stream can take it; points coalesce
        // in the client's buffer only while the previous frame is still being written.
        while (!ctx.signal.aborted) {
          await client.ready(ctx.signal);
          if (ctx.signal.aborted) break;
          await send(liveFrameBytes(client.take()));
        }
      } finally {
        client.close();
      }
    },
  });
}
