import type { AggregationKind, PointStreamSource, StoredPoint, TelemetryStore } from '../store/telemetry-store';
import { ChunkSink, ExportCell, ExportColumn, fileEncoder, FileFormat, FORMAT_FILES } from './export-formats';
import { inAnyGroup, KnownDevices, unknownGroup, labelsMatch, MAX_BUCKETS, MAX_METRICS } from './telemetry';

/** Which devices an export covers: the ids, or every known device matching the labels and type. */
export interface DeviceSelection {
  deviceIds: string[];
  labels: Record<string, string>;
  deviceType: string;
  /** A device group id ('' for none): its members when the export starts. */
  groupId: string;
}

/** One validated export. */
export interface ExportRequest {
  tenantId: string;
  selection: DeviceSelection;
  /** Empty means every metric. */
  metrics: string[];
  start: Date;
  end: Date;
  format: FileFormat;
  /** Set: history buckets of this width instead of raw points. */
  bucketMs?: number;
}

/** What an export wrote. */
export interface ExportResult {
  rows: number;
  devices: number;
}

/** Columns of a raw-point export, in every format. */
export const POINT_COLUMNS: ExportColumn[] = [
  { name: 'time', kind: 'time', required: true },
  { name: 'device_id', kind: 'string', required: true },
  { name: 'metric', kind: 'string', required: true },
  { name: 'number_value', kind: 'double' },
  { name: 'bool_value', kind: 'bool' },
  { name: 'string_value', kind: 'string' },
];

const BUCKET_AGGREGATIONS: AggregationKind[] = ['min', 'max', 'avg', 'sum', 'last'];

/** Columns of a history export: one row per device, metric and non-empty bucket. */
export const BUCKET_COLUMNS: ExportColumn[] = [
  { name: 'time', kind: 'time', required: true },
  { name: 'device_id', kind: 'string', required: true },
  { name: 'metric', kind: 'string', required: true },
  { name: 'count', kind: 'int64', required: true },
  ...BUCKET_AGGREGATIONS.map((name): ExportColumn => ({ name, kind: 'double' })),
];

/** Raw points read per page from stores without a cursor. */
const PAGE = 5000;

function pointCells(p: StoredPoint): ExportCell[] {
  return [p.time, p.deviceId, p.metric, p.value.number ?? null, p.value.bool ?? null, p.value.string ?? null];
}

/** The file name an export suggests: what, when, and the format's extension. */
export function exportFileName(request: Pick<ExportRequest, 'start' | 'end' | 'format' | 'bucketMs'>): string {
  const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  return `telemetry-${request.bucketMs ? 'history' : 'points'}-${stamp(request.start)}-${stamp(request.end)}.${FORMAT_FILES[request.format].extension}`;
}

/** True when a history export's buckets per series stay within what a history query may return. */
export function bucketsWithinLimit(start: Date, end: Date, bucketMs: number): boolean {
  return (end.getTime() - start.getTime()) / bucketMs <= MAX_BUCKETS;
}

/**
 * Telemetry exports: rows read from the store as they are written out, one
 * encoder per file, each chunk awaited by the caller's sink — nothing here
 * holds more than a chunk (a Parquet row group) whatever the range.
 */
export class TelemetryExport {
  constructor(
    private readonly deps: {
      store: TelemetryStore;
      /** A cursor over raw points; without one, raw points are read in keyset pages. */
      cursor?: PointStreamSource;
      devices: KnownDevices;
    },
  ) {}

  /** The first of `groupIds` the tenant has no group of, or undefined (checked before an export starts). */
  unknownGroup(tenantId: string, groupIds: readonly string[]): string | undefined {
    return unknownGroup(this.deps.devices, tenantId, groupIds);
  }

  /** The device ids a selection covers, sorted: the given ids, else the known devices matching labels, type and group. */
  selectDevices(tenantId: string, selection: DeviceSelection): string[] {
    if (selection.deviceIds.length > 0) return [...new Set(selection.deviceIds)].sort();
    return this.deps.devices
      .devicesOf(tenantId)
      .filter((d) => labelsMatch(selection.labels, d.labels) && (!selection.deviceType || d.type === selection.deviceType) && (!selection.groupId || inAnyGroup(this.deps.devices, d, [selection.groupId])))
      .map((d) => d.deviceId)
      .sort();
  }

  /** Writes the whole file to `sink`; stops reading when `signal` aborts. */
  async run(request: ExportRequest, sink: ChunkSink, signal?: AbortSignal): Promise<ExportResult> {
    const deviceIds = this.selectDevices(request.tenantId, request.selection);
    const columns = request.bucketMs ? BUCKET_COLUMNS : POINT_COLUMNS;
    const encoder = fileEncoder(request.format, columns, sink);
    let rows = 0;
    const source = request.bucketMs ? this.bucketRows(request, deviceIds, request.bucketMs) : this.pointRows(request, deviceIds);
    for await (const batch of source) {
      if (signal?.aborted) break;
      await encoder.add(batch);
      rows += batch.length;
    }
    if (!signal?.aborted) await encoder.end();
    return { rows, devices: deviceIds.length };
  }

  private async *pointRows(request: ExportRequest, deviceIds: string[]): AsyncIterable<ExportCell[][]> {
    if (deviceIds.length === 0) return;
    const { tenantId, metrics, start, end } = request;
    if (this.deps.cursor) {
      for await (const batch of this.deps.cursor.streamPoints({ tenantId, deviceIds, metrics, start, end })) yield batch.map(pointCells);
      return;
    }
    for (const deviceId of deviceIds) {
      let after;
      do {
        const page = await this.deps.store.points({ tenantId, deviceId, metrics, start, end, after, limit: PAGE });
        yield page.points.map(pointCells);
        after = page.next;
      } while (after);
    }
  }

  /** History buckets device by device (one device's series in memory at a time, at most MAX_BUCKETS each). */
  private async *bucketRows(request: ExportRequest, deviceIds: string[], bucketMs: number): AsyncIterable<ExportCell[][]> {
    const { tenantId, start, end } = request;
    for (const deviceId of deviceIds) {
      // Every metric: the ones the device has a latest value of.
      const metrics = request.metrics.length ? request.metrics : [...new Set((await this.deps.store.latest(tenantId, [deviceId], [], MAX_METRICS)).map((p) => p.metric))].sort();
      if (metrics.length === 0) continue;
      const series = await this.deps.store.history({ tenantId, deviceId, metrics, start, end, bucketMs, origin: new Date(0), aggregations: [...BUCKET_AGGREGATIONS, 'count'] });
      for (const s of series) yield s.buckets.map((b) => [b.start, deviceId, s.metric, Number(b.count), ...BUCKET_AGGREGATIONS.map((a) => b.values[a])]);
    }
  }
}
