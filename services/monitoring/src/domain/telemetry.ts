import { errors } from '@iot-mesh/runtime';
import { AggregateBucket, Aggregation, DataPoint, DeviceSeries, Series, Value } from '../../../../gen/ts/iot/monitoring/v1/telemetry';
import type { AggregationKind, HistoryBucket, PointCursor, PointRow, SampleValue, StoredPoint, TelemetryStore } from '../store/telemetry-store';

/** Most devices one GetLatest names (and most values it returns). */
export const LATEST_LIMIT = 1000;
/** Most metrics one query names. */
export const MAX_METRICS = 50;
/** Most buckets one QueryHistory answer holds. */
export const MAX_BUCKETS = 10_000;
/** Most member devices one QueryGroupHistory covers: a larger group is FAILED_PRECONDITION. */
export const MAX_GROUP_HISTORY_DEVICES = 500;
/** Most buckets one QueryGroupHistory answer holds (per series: the group's and each device's). */
export const MAX_GROUP_BUCKETS = 1000;
/** Buckets of a QueryHistory that names neither bucket width nor max points. */
const DEFAULT_MAX_POINTS = 1000;
/** The time range of a query that names none ends now and spans a day. */
export const DEFAULT_RANGE_MS = 86_400_000;
/** Longest time range a QueryHistory or ListPoints may cover unless configured otherwise (HISTORY_MAX_SPAN_DAYS). */
export const DEFAULT_MAX_HISTORY_SPAN_MS = 400 * 86_400_000;

/** The aggregations QueryHistory supports, as the store computes them. */
export const AGGREGATIONS: Partial<Record<Aggregation, AggregationKind>> = {
  [Aggregation.AGGREGATION_MIN]: 'min',
  [Aggregation.AGGREGATION_MAX]: 'max',
  [Aggregation.AGGREGATION_AVG]: 'avg',
  [Aggregation.AGGREGATION_SUM]: 'sum',
  [Aggregation.AGGREGATION_COUNT]: 'count',
  [Aggregation.AGGREGATION_LAST]: 'last',
};

/** One validated telemetry message: its device and its points as rows. */
export interface TelemetryMessage {
  tenantId: string;
  deviceId: string;
  messageId: string;
  rows: PointRow[];
}

/** A device as monitoring knows it from the device directory. */
export interface KnownDevice {
  tenantId: string;
  deviceId: string;
  labels: Record<string, string>;
  /** Its device type name ('' when it has none); rules select devices by it. */
  type?: string;
  /** Its DeviceType id ('' or undefined when untyped); group selectors name it. */
  deviceTypeId?: string;
  /** Its credentials are revoked: its telemetry is refused. */
  revoked: boolean;
  /**
   * Set when the device's type dead-letters metrics it does not declare
   * (UNKNOWN_METRIC_POLICY_DEAD_LETTER): the names the type declares.
   */
  declaredMetrics?: ReadonlySet<string>;
}

/** The devices monitoring knows of, in memory (the device directory view). */
export interface KnownDevices {
  /** The device, if it is known right now. */
  get(tenantId: string, deviceId: string): KnownDevice | undefined;
  /** Every known device of a tenant. */
  devicesOf(tenantId: string): KnownDevice[];
  /** The selector of a device group of the tenant (the group directory); undefined when the tenant has no such group. */
  group(tenantId: string, groupId: string): KnownGroup | undefined;
}

/** A device group as monitoring knows it from the group directory: a selector, applied to the device directory now. */
export interface KnownGroup {
  tenantId: string;
  groupId: string;
  matchLabels: Record<string, string>;
  /** Only devices of this DeviceType id when set. */
  deviceTypeId?: string;
}

/** True when every label of `selector` is on the device with the same value. */
export function labelsMatch(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels?.[k] !== v) return false;
  return true;
}

/** Most group ids one selector names. */
export const MAX_GROUPS = 100;

/** Group ids are UUIDs (the device service assigns them). */
export const GROUP_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The first of `groupIds` the tenant has no group of (NOT_FOUND for the caller), or undefined when all exist. */
export function unknownGroup(devices: Pick<KnownDevices, 'group'>, tenantId: string, groupIds: readonly string[]): string | undefined {
  return groupIds.find((id) => devices.group(tenantId, id)?.tenantId !== tenantId);
}

/**
 * True when the device is, right now, a member of at least one of the
 * tenant's groups named (a group id unknown in the tenant, or of another
 * tenant, selects nothing).
 */
export function inAnyGroup(devices: Pick<KnownDevices, 'group'>, device: KnownDevice | undefined, groupIds: readonly string[]): boolean {
  if (!device) return false;
  return groupIds.some((id) => {
    const group = devices.group(device.tenantId, id);
    return !!group && group.tenantId === device.tenantId && labelsMatch(group.matchLabels, device.labels) && (!group.deviceTypeId || group.deviceTypeId === device.deviceTypeId);
  });
}

/** A stored or live sample's value as the API's `Value`. */
export function toValue(value: SampleValue): Value {
  if (value.number !== undefined) return { numberValue: value.number };
  if (value.bool !== undefined) return { boolValue: value.bool };
  return { stringValue: value.string ?? '' };
}

/** A sample as the API's `DataPoint`. */
export function toDataPoint(point: Pick<StoredPoint, 'deviceId' | 'metric' | 'time' | 'value'>): DataPoint {
  return { deviceId: point.deviceId, metric: point.metric, time: point.time, value: toValue(point.value) };
}

/** A QueryHistory as the domain takes it (already validated). */
export interface HistoryRequest {
  tenantId: string;
  deviceId: string;
  metrics: string[];
  start: Date;
  end: Date;
  /** A fixed bucket width; unset: the range divided into `maxPoints` buckets. */
  bucketWidthMs?: number;
  /** 0: the default (1,000). */
  maxPoints: number;
  /** Empty: average. */
  aggregations: Aggregation[];
}

/** A QueryGroupHistory as the domain takes it (already validated). */
export interface GroupHistoryRequest {
  tenantId: string;
  groupId: string;
  /** Only members of this device type (name) when not empty. */
  deviceType: string;
  metric: string;
  start: Date;
  end: Date;
  /** A fixed bucket width; unset: the range divided into `maxPoints` buckets. */
  bucketWidthMs?: number;
  /** 0: the default (1,000). */
  maxPoints: number;
  /** Also one series per member device. */
  perDevice: boolean;
}

/** What QueryGroupHistory answers. */
export interface GroupHistoryResult {
  buckets: AggregateBucket[];
  devices: DeviceSeries[];
  bucketWidthMs: number;
  memberCount: number;
}

/** A device's stored bucket as an `AggregateBucket` of one device. */
function deviceBucket(b: HistoryBucket): AggregateBucket {
  return { startTime: b.start, min: b.values.min, max: b.values.max, avg: b.values.avg, sum: b.values.sum, count: b.count, devices: 1 };
}

/** The buckets of several devices folded into one series: per start time the extremes, sums and counts of all, oldest first. */
export function foldBuckets(perDevice: readonly AggregateBucket[][]): AggregateBucket[] {
  const byStart = new Map<number, AggregateBucket>();
  for (const buckets of perDevice) {
    for (const b of buckets) {
      const at = b.startTime!.getTime();
      const seen = byStart.get(at);
      if (!seen) {
        byStart.set(at, { ...b });
        continue;
      }
      seen.min = Math.min(seen.min, b.min);
      seen.max = Math.max(seen.max, b.max);
      seen.sum += b.sum;
      seen.count += b.count;
      seen.devices += b.devices;
    }
  }
  const folded = [...byStart.values()].sort((a, b) => a.startTime!.getTime() - b.startTime!.getTime());
  for (const b of folded) b.avg = b.sum / Number(b.count);
  return folded;
}

/** How a history query is bucketed. */
export interface BucketPlan {
  bucketMs: number;
  /** Bucket starts are origin + k × bucketMs. */
  origin: Date;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/**
 * Bucket widths a chosen bucketing rounds up to: whole seconds, minutes, hours
 * or days, each dividing the next unit, so buckets never start at fractional
 * seconds and, from a minute up, the store's minute/hour/day rollups divide them.
 */
const NICE_WIDTHS_MS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500,
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY,
];

/** The smallest nice width (whole days beyond a day) at or above `ms`. */
function niceWidthAtLeast(ms: number): number {
  return NICE_WIDTHS_MS.find((w) => w >= ms) ?? Math.ceil(ms / DAY) * DAY;
}

/** The next nice width after `width`. */
function nextNiceWidth(width: number): number {
  return NICE_WIDTHS_MS.find((w) => w > width) ?? width + DAY;
}

/**
 * Chooses the buckets of a history query; buckets start at whole multiples of
 * the width since the epoch (minutes on the minute), so answers line up with
 * the store's rollups. An explicit width is used as it is; otherwise the
 * smallest nice width (see above) that cuts the range into at most
 * `maxPoints` buckets, counting the partial ones at either end.
 */
export function planBuckets(start: Date, end: Date, bucketWidthMs: number | undefined, maxPoints: number): BucketPlan {
  const origin = new Date(0);
  if (bucketWidthMs !== undefined) return { bucketMs: Math.max(1, bucketWidthMs), origin };
  const from = start.getTime();
  const to = end.getTime();
  const most = maxPoints || DEFAULT_MAX_POINTS;
  let width = niceWidthAtLeast(Math.ceil((to - from) / most));
  while (Math.floor((to - 1) / width) - Math.floor(from / width) + 1 > most) width = nextNiceWidth(width);
  return { bucketMs: width, origin };
}

/** A page of raw points and where the next one starts. */
export interface PointsResult {
  points: DataPoint[];
  next?: PointCursor;
}

/**
 * Telemetry reads: latest values, bucketed history and raw points, each
 * scoped to one tenant. Requests arrive validated; this decides how they are
 * answered from the store and shapes the answers.
 */
export class TelemetryQueries {
  /**
   * @param maxHistorySpanMs longest time range one history or points query may cover: a wider one is
   *   refused as INVALID_ARGUMENT (a field violation on `time_range`) before it reaches the store.
   */
  /** @param devices the device and group directories, which resolve a group to its members now. */
  constructor(
    private readonly store: TelemetryStore,
    private readonly devices: Pick<KnownDevices, 'group' | 'devicesOf'>,
    readonly maxHistorySpanMs = DEFAULT_MAX_HISTORY_SPAN_MS,
  ) {}

  /** Newest value per device and metric (empty lists mean all). */
  async latest(tenantId: string, deviceIds: string[], metrics: string[]): Promise<DataPoint[]> {
    const points = await this.store.latest(tenantId, deviceIds, metrics, LATEST_LIMIT);
    return points.map(toDataPoint);
  }

  /** One series per metric and requested aggregation, and the bucket width used. */
  async history(request: HistoryRequest): Promise<{ series: Series[]; bucketWidthMs: number }> {
    const { bucketMs, origin } = planBuckets(request.start, request.end, request.bucketWidthMs, request.maxPoints);
    const requested = request.aggregations.length > 0 ? request.aggregations : [Aggregation.AGGREGATION_AVG];
    const kinds = requested.map((a) => {
      const kind = AGGREGATIONS[a];
      if (!kind) throw new Error(`aggregation ${a} is not supported`);
      return kind;
    });
    const result = await this.store.history({
      tenantId: request.tenantId,
      deviceId: request.deviceId,
      metrics: [...new Set(request.metrics)],
      start: request.start,
      end: request.end,
      bucketMs,
      origin,
      aggregations: kinds,
    });
    const series: Series[] = [];
    for (const s of result) {
      requested.forEach((aggregation, i) => {
        series.push({ metric: s.metric, aggregation, buckets: s.buckets.map((b) => ({ startTime: b.start, value: b.values[kinds[i]], count: b.count })) });
      });
    }
    return { series, bucketWidthMs: bucketMs };
  }

  /**
   * One metric of a group's members now (of `deviceType` when set), bucketed
   * per device by the store and folded across them here. NOT_FOUND for a group
   * the tenant has not; FAILED_PRECONDITION for more than MAX_GROUP_HISTORY_DEVICES members.
   */
  async groupHistory(request: GroupHistoryRequest): Promise<GroupHistoryResult> {
    const { tenantId, groupId, deviceType } = request;
    if (unknownGroup(this.devices, tenantId, [groupId])) throw errors.notFound('group', groupId);
    const members = this.devices
      .devicesOf(tenantId)
      .filter((d) => (!deviceType || d.type === deviceType) && inAnyGroup(this.devices, d, [groupId]))
      .map((d) => d.deviceId)
      .sort();
    if (members.length > MAX_GROUP_HISTORY_DEVICES) {
      throw errors.failedPrecondition(
        `the group has ${members.length} member devices${deviceType ? ` of type ${JSON.stringify(deviceType)}` : ''}; a group history covers at most ${MAX_GROUP_HISTORY_DEVICES}: narrow the group or name a device_type`,
        'TOO_MANY_GROUP_MEMBERS',
      );
    }
    const { bucketMs, origin } = planBuckets(request.start, request.end, request.bucketWidthMs, request.maxPoints);
    const series =
      members.length === 0
        ? []
        : await this.store.historyByDevice({ tenantId, deviceIds: members, metric: request.metric, start: request.start, end: request.end, bucketMs, origin });
    const devices = series.map((s) => ({ deviceId: s.deviceId, buckets: s.buckets.map(deviceBucket) }));
    return {
      buckets: foldBuckets(devices.map((d) => d.buckets)),
      devices: request.perDevice ? devices : [],
      bucketWidthMs: bucketMs,
      memberCount: members.length,
    };
  }

  /** Raw points, oldest first, `limit` at a time after `after`. */
  async points(query: { tenantId: string; deviceId: string; metrics: string[]; start: Date; end: Date; after?: PointCursor; limit: number }): Promise<PointsResult> {
    const page = await this.store.points(query);
    return { points: page.points.map(toDataPoint), next: page.next };
  }
}
