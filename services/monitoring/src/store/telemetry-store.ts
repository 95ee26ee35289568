/** A sample's value: exactly one of the three is set. */
export interface SampleValue {
  number?: number;
  bool?: boolean;
  string?: string;
}

/** One point as the writer stores it. (tenant, device, metric, time, messageId, pointIndex) identifies it. */
export interface PointRow {
  tenantId: string;
  deviceId: string;
  metric: string;
  time: Date;
  /** The payload's message id (or a stand-in derived from the payload when it had none). */
  messageId: string;
  /** Position of the point inside its message. */
  pointIndex: number;
  value: SampleValue;
  /**
   * The point had no time of its own: `time` is its message's receive time,
   * which the PostgreSQL store replaces with the message's first receipt, so
   * a copy received later is the same point.
   */
  untimed?: boolean;
}

/** One stored sample as queries return it. */
export interface StoredPoint {
  deviceId: string;
  metric: string;
  time: Date;
  value: SampleValue;
}

/** What one aggregation computes over the numeric samples of a bucket. */
export type AggregationKind = 'min' | 'max' | 'avg' | 'sum' | 'count' | 'last';

/** A history query: one device, some metrics, [start, end), buckets of `bucketMs`. */
export interface HistoryQuery {
  tenantId: string;
  deviceId: string;
  metrics: string[];
  start: Date;
  end: Date;
  bucketMs: number;
  /** Where buckets are aligned: bucket starts are origin + k × bucketMs. */
  origin: Date;
  aggregations: AggregationKind[];
}

/** One bucket of one metric: the requested aggregations (a store may leave `last` NaN unless it was requested). */
export interface HistoryBucket {
  start: Date;
  /** Number of numeric (or boolean, counted as 0/1) samples in the bucket. */
  count: bigint;
  values: Record<AggregationKind, number>;
}

/** Buckets of one metric, oldest first; empty buckets are absent. */
export interface HistorySeries {
  metric: string;
  buckets: HistoryBucket[];
}

/** A history query over several devices and one metric, answered per device; no `last` (NaN). */
export interface DevicesHistoryQuery extends Omit<HistoryQuery, 'deviceId' | 'metrics' | 'aggregations'> {
  deviceIds: string[];
  metric: string;
}

/** One device's buckets of a metric, oldest first; empty buckets are absent. */
export interface DeviceHistorySeries {
  deviceId: string;
  buckets: HistoryBucket[];
}

/** Keyset position of a point in (time, metric, messageId, pointIndex) order. */
export interface PointCursor {
  time: Date;
  metric: string;
  messageId: string;
  pointIndex: number;
}

/** A page of raw points. */
export interface PointsQuery {
  tenantId: string;
  deviceId: string;
  /** Empty means every metric. */
  metrics: string[];
  start: Date;
  end: Date;
  after?: PointCursor;
  limit: number;
}

/** What {@link TelemetryStore.points} returns. */
export interface PointsPage {
  points: StoredPoint[];
  /** Position of the last point returned when more may follow. */
  next?: PointCursor;
}

/** Raw points of several devices over a range, for an export: read with a cursor, never all at once. */
export interface PointStreamQuery {
  tenantId: string;
  deviceIds: string[];
  /** Empty means every metric. */
  metrics: string[];
  start: Date;
  end: Date;
}

/**
 * Reads raw points for exports with a database cursor. The PostgreSQL store
 * has one (`export-queries.ts`); stores without one are exported through
 * {@link TelemetryStore.points} pages.
 */
export interface PointStreamSource {
  /**
   * Raw points of the devices ordered by device, metric, time, yielded in
   * batches as the database returns them (memory does not grow with the
   * range). Stopping the iteration early closes the cursor.
   */
  streamPoints(query: PointStreamQuery): AsyncIterable<StoredPoint[]>;
}

/** What a write did. */
export interface WriteResult {
  /** Rows that were new (the rest were duplicates of rows already stored). */
  inserted: number;
}

/**
 * Durable telemetry storage. Implementations must be idempotent on a point's
 * identity: writing the same rows again, in the same or another batch, adds
 * nothing. A write is all-or-nothing.
 */
export interface TelemetryStore {
  /** Stores a batch in one transaction and refreshes the latest values. */
  write(rows: PointRow[]): Promise<WriteResult>;
  /** Newest sample per device and metric (empty lists mean all), at most `limit`. */
  latest(tenantId: string, deviceIds: string[], metrics: string[], limit: number): Promise<StoredPoint[]>;
  /** Bucketed aggregates computed by the database (from rollups where the store keeps them). */
  history(query: HistoryQuery): Promise<HistorySeries[]>;
  /** The same buckets of one metric for each of several devices (devices without points are absent). */
  historyByDevice(query: DevicesHistoryQuery): Promise<DeviceHistorySeries[]>;
  /** Raw points, oldest first, keyset-paged. */
  points(query: PointsQuery): Promise<PointsPage>;
  /** Removes every sample older than `before` (all tenants); returns what was removed, for logs. */
  dropBefore(before: Date): Promise<{ removed: string[] }>;
  /**
   * Removes rollups (downsampled history) whose buckets start before `before`; returns rows
   * deleted. Stores without rollups (history from raw points) do not have it.
   */
  dropRollupsBefore?(before: Date): Promise<number>;
  /** Removes one tenant's samples older than `before`, in bounded chunks; returns rows deleted. */
  deleteTenantBefore(tenantId: string, before: Date, chunkSize?: number): Promise<number>;
  /** Creates storage for every day from `from` to `to` ahead of time; only stores that partition by day have it. */
  ensurePartitions?(from: Date, to: Date): Promise<void>;
  /** Is the store reachable right now? Throws when not. */
  ping(): Promise<void>;
}
