import type { AnyBulkWriteOperation, Collection, Db, MongoBulkWriteError } from 'mongodb';
import {
  AggregationKind,
  DeviceHistorySeries,
  DevicesHistoryQuery,
  HistoryBucket,
  HistoryQuery,
  HistorySeries,
  PointRow,
  PointsPage,
  PointsQuery,
  SampleValue,
  StoredPoint,
  TelemetryStore,
  WriteResult,
} from './telemetry-store';

/** One stored sample. `_id` is the point's identity, which makes inserts idempotent. */
interface PointDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  metric: string;
  time: Date;
  messageId: string;
  pointIndex: number;
  n?: number;
  b?: boolean;
  s?: string;
  /** The numeric view aggregations use: the number, or a boolean as 0/1; absent for strings. */
  v?: number;
}

interface LatestDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  metric: string;
  time: Date;
  n?: number;
  b?: boolean;
  s?: string;
}

const DUPLICATE_KEY = 11000;

function idOf(r: PointRow): string {
  // NUL cannot occur in subject tokens or metric names, so the parts cannot run into each other.
  return [r.tenantId, r.deviceId, r.metric, r.time.toISOString(), r.messageId, r.pointIndex].join('\u0000');
}

function valueFields(v: SampleValue): Pick<PointDoc, 'n' | 'b' | 's' | 'v'> {
  if (v.number !== undefined) return { n: v.number, v: v.number };
  if (v.bool !== undefined) return { b: v.bool, v: v.bool ? 1 : 0 };
  return { s: v.string ?? '' };
}

function valueOf(d: { n?: number; b?: boolean; s?: string }): SampleValue {
  if (d.n !== undefined && d.n !== null) return { number: d.n };
  if (d.b !== undefined && d.b !== null) return { bool: d.b };
  return { string: d.s ?? '' };
}

/** Only duplicate-key failures (rows already stored) are acceptable in an unordered bulk write. */
function onlyDuplicates(err: unknown): boolean {
  const e = err as MongoBulkWriteError;
  const writeErrors = e?.writeErrors;
  const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : [];
  return e?.code === DUPLICATE_KEY || (list.length > 0 && list.every((w) => w.code === DUPLICATE_KEY));
}

/**
 * The MongoDB telemetry store, for deployments that choose MongoDB. Points
 * are documents whose `_id` is the point identity, so a repeated write is a
 * duplicate-key no-op; `latest` is a small collection upserted only forward
 * in time. A write that fails half-way leaves some points stored; retrying
 * it (the writer always does) completes it without duplicates.
 */
export class MongoTelemetryStore implements TelemetryStore {
  private readonly pointsCollection: Collection<PointDoc>;
  private readonly latestCollection: Collection<LatestDoc>;

  constructor(private readonly db: Db) {
    this.pointsCollection = db.collection<PointDoc>('points');
    this.latestCollection = db.collection<LatestDoc>('latest_points');
  }

  /** Creates the indexes queries need; safe to call at every start. */
  async init(): Promise<void> {
    await this.pointsCollection.createIndex({ tenantId: 1, deviceId: 1, metric: 1, time: 1 });
    await this.pointsCollection.createIndex({ tenantId: 1, deviceId: 1, time: 1, metric: 1, messageId: 1, pointIndex: 1 });
    await this.pointsCollection.createIndex({ time: 1 });
    await this.latestCollection.createIndex({ tenantId: 1, deviceId: 1, metric: 1 });
  }

  async write(rows: PointRow[]): Promise<WriteResult> {
    if (rows.length === 0) return { inserted: 0 };
    const docs = new Map<string, PointDoc>();
    for (const r of rows) {
      const _id = idOf(r);
      if (!docs.has(_id)) {
        docs.set(_id, { _id, tenantId: r.tenantId, deviceId: r.deviceId, metric: r.metric, time: r.time, messageId: r.messageId, pointIndex: r.pointIndex, ...valueFields(r.value) });
      }
    }
    let inserted = 0;
    try {
      inserted = (await this.pointsCollection.insertMany([...docs.values()], { ordered: false })).insertedCount;
    } catch (err) {
      if (!onlyDuplicates(err)) throw err;
      inserted = (err as MongoBulkWriteError).result?.insertedCount ?? 0;
    }
    const newest = new Map<string, PointRow>();
    for (const r of rows) {
      const key = `${r.tenantId}\u0000${r.deviceId}\u0000${r.metric}`;
      const seen = newest.get(key);
      if (!seen || seen.time.getTime() <= r.time.getTime()) newest.set(key, r);
    }
    const ops: AnyBulkWriteOperation<LatestDoc>[] = [...newest.entries()].map(([_id, r]) => {
      const { v: _v, ...value } = valueFields(r.value);
      return {
        updateOne: {
          filter: { _id, time: { $lte: r.time } },
          update: { $set: { tenantId: r.tenantId, deviceId: r.deviceId, metric: r.metric, time: r.time, n: value.n, b: value.b, s: value.s } },
          upsert: true,
        },
      };
    });
    try {
      await this.latestCollection.bulkWrite(ops, { ordered: false });
    } catch (err) {
      // A newer latest value exists: the upsert's insert collides with it, which is what we want.
      if (!onlyDuplicates(err)) throw err;
    }
    return { inserted };
  }

  async latest(tenantId: string, deviceIds: string[], metrics: string[], limit: number): Promise<StoredPoint[]> {
    const filter: Record<string, unknown> = { tenantId };
    if (deviceIds.length > 0) filter.deviceId = { $in: deviceIds };
    if (metrics.length > 0) filter.metric = { $in: metrics };
    const docs = await this.latestCollection.find(filter).sort({ deviceId: 1, metric: 1 }).limit(limit).toArray();
    return docs.map((d) => ({ deviceId: d.deviceId, metric: d.metric, time: d.time, value: valueOf(d) }));
  }

  async history(query: HistoryQuery): Promise<HistorySeries[]> {
    const rows = await this.bucketRows({ ...query, deviceIds: [query.deviceId] }, query.metrics);
    const byMetric = new Map<string, HistorySeries>(query.metrics.map((m) => [m, { metric: m, buckets: [] }]));
    for (const r of rows) byMetric.get(r.metric)?.buckets.push(r.bucket);
    return [...byMetric.values()];
  }

  async historyByDevice(query: DevicesHistoryQuery): Promise<DeviceHistorySeries[]> {
    const byDevice = new Map<string, DeviceHistorySeries>();
    for (const r of await this.bucketRows(query, [query.metric])) {
      let series = byDevice.get(r.deviceId);
      if (!series) byDevice.set(r.deviceId, (series = { deviceId: r.deviceId, buckets: [] }));
      series.buckets.push(r.bucket);
    }
    return [...byDevice.values()];
  }

  /** Buckets per device and metric from the raw points, ordered by device, metric, bucket. */
  private async bucketRows(query: Omit<DevicesHistoryQuery, 'metric'>, metrics: string[]): Promise<{ deviceId: string; metric: string; bucket: HistoryBucket }[]> {
    const origin = query.origin;
    const width = query.bucketMs;
    const rows = await this.pointsCollection
      .aggregate<{ _id: { deviceId: string; metric: string; bucket: Date }; min: number; max: number; avg: number; sum: number; count: number; last: number }>([
        {
          $match: {
            tenantId: query.tenantId,
            deviceId: { $in: query.deviceIds },
            metric: { $in: metrics },
            time: { $gte: query.start, $lt: query.end },
            v: { $exists: true },
          },
        },
        { $sort: { time: 1, messageId: 1, pointIndex: 1 } },
        {
          $group: {
            _id: {
              deviceId: '$deviceId',
              metric: '$metric',
              bucket: { $add: [origin, { $multiply: [{ $floor: { $divide: [{ $subtract: ['$time', origin] }, width] } }, width] }] },
            },
            min: { $min: '$v' },
            max: { $max: '$v' },
            avg: { $avg: '$v' },
            sum: { $sum: '$v' },
            count: { $sum: 1 },
            last: { $last: '$v' },
          },
        },
        { $sort: { '_id.deviceId': 1, '_id.metric': 1, '_id.bucket': 1 } },
      ])
      .toArray();
    return rows.map((r) => ({
      deviceId: r._id.deviceId,
      metric: r._id.metric,
      bucket: { start: r._id.bucket, count: BigInt(r.count), values: { min: r.min, max: r.max, avg: r.avg, sum: r.sum, count: Number(r.count), last: r.last } },
    }));
  }

  async points(query: PointsQuery): Promise<PointsPage> {
    const filter: Record<string, unknown> = { tenantId: query.tenantId, deviceId: query.deviceId, time: { $gte: query.start, $lt: query.end } };
    if (query.metrics.length > 0) filter.metric = { $in: query.metrics };
    const a = query.after;
    if (a) {
      filter.$or = [
        { time: { $gt: a.time } },
        { time: a.time, metric: { $gt: a.metric } },
        { time: a.time, metric: a.metric, messageId: { $gt: a.messageId } },
        { time: a.time, metric: a.metric, messageId: a.messageId, pointIndex: { $gt: a.pointIndex } },
      ];
    }
    const docs = await this.pointsCollection.find(filter).sort({ time: 1, metric: 1, messageId: 1, pointIndex: 1 }).limit(query.limit + 1).toArray();
    const more = docs.length > query.limit;
    const page = docs.slice(0, query.limit);
    const last = page[page.length - 1];
    return {
      points: page.map((d) => ({ deviceId: d.deviceId, metric: d.metric, time: d.time, value: valueOf(d) })),
      next: more && last ? { time: last.time, metric: last.metric, messageId: last.messageId, pointIndex: last.pointIndex } : undefined,
    };
  }

  async dropBefore(before: Date): Promise<{ removed: string[] }> {
    const { deletedCount } = await this.pointsCollection.deleteMany({ time: { $lt: before } });
    await this.latestCollection.deleteMany({ time: { $lt: before } });
    return { removed: deletedCount ? [`${deletedCount} points`] : [] };
  }

  async deleteTenantBefore(tenantId: string, before: Date, chunkSize = 10_000): Promise<number> {
    let total = 0;
    for (;;) {
      const ids = (await this.pointsCollection.find({ tenantId, time: { $lt: before } }, { projection: { _id: 1 } }).limit(chunkSize).toArray()).map((d) => d._id);
      if (ids.length === 0) break;
      total += (await this.pointsCollection.deleteMany({ _id: { $in: ids } })).deletedCount;
      if (ids.length < chunkSize) break;
    }
    await this.latestCollection.deleteMany({ tenantId, time: { $lt: before } });
    return total;
  }

  async ping(): Promise<void> {
    await this.db.command({ ping: 1 });
  }
}
