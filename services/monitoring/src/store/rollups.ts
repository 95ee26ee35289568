import type { PointRow } from './telemetry-store';

/** Rollup widths kept, finest first: a minute, an hour, a day (buckets aligned to the epoch). */
export const ROLLUP_WIDTHS_MS = [60_000, 3_600_000, 86_400_000] as const;

/** One rollup bucket of one series, as the store upserts it. */
export interface RollupRow {
  tenantId: string;
  deviceId: string;
  metric: string;
  widthMs: number;
  bucket: number;
  count: number;
  sum: number;
  min: number;
  max: number;
  last: number;
  lastTime: number;
  lastMessageId: string;
  lastPointIndex: number;
}

/** A point's numeric value for aggregation: numbers as they are, booleans as 0/1, strings not at all. */
export function numericValue(row: Pick<PointRow, 'value'>): number | undefined {
  if (row.value.number !== undefined) return row.value.number;
  if (row.value.bool !== undefined) return row.value.bool ? 1 : 0;
  return undefined;
}

/**
 * True when point a comes after point b in the order `last` is defined by:
 * time, then message id, then point index (the raw query's order; message ids
 * compare by code unit, as `COLLATE "C"` does for the ASCII ids devices use).
 */
export function isLater(a: { time: number; messageId: string; pointIndex: number }, b: { time: number; messageId: string; pointIndex: number }): boolean {
  if (a.time !== b.time) return a.time > b.time;
  if (a.messageId !== b.messageId) return a.messageId > b.messageId;
  return a.pointIndex > b.pointIndex;
}

/**
 * Aggregates the points a transaction inserted into one row per series, width
 * and bucket, sorted by key so that concurrent writers lock rollup rows in the
 * same order.
 */
export function rollupsOf(rows: PointRow[]): RollupRow[] {
  const byKey = new Map<string, RollupRow>();
  for (const r of rows) {
    const v = numericValue(r);
    if (v === undefined) continue;
    const time = r.time.getTime();
    for (const widthMs of ROLLUP_WIDTHS_MS) {
      const bucket = Math.floor(time / widthMs) * widthMs;
      const key = `${r.tenantId}\u0000${r.deviceId}\u0000${r.metric}\u0000${widthMs}\u0000${bucket}`;
      const seen = byKey.get(key);
      if (!seen) {
        byKey.set(key, { tenantId: r.tenantId, deviceId: r.deviceId, metric: r.metric, widthMs, bucket, count: 1, sum: v, min: v, max: v, last: v, lastTime: time, lastMessageId: r.messageId, lastPointIndex: r.pointIndex });
        continue;
      }
      seen.count++;
      seen.sum += v;
      if (v < seen.min) seen.min = v;
      if (v > seen.max) seen.max = v;
      if (isLater({ time, messageId: r.messageId, pointIndex: r.pointIndex }, { time: seen.lastTime, messageId: seen.lastMessageId, pointIndex: seen.lastPointIndex })) {
        seen.last = v;
        seen.lastTime = time;
        seen.lastMessageId = r.messageId;
        seen.lastPointIndex = r.pointIndex;
      }
    }
  }
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
}

/** A time range [from, to) answered from one source: a rollup width, or raw points (`widthMs` 0). */
export interface HistorySpan {
  widthMs: number;
  from: number;
  to: number;
}

/**
 * Splits [start, end) into spans answered by the coarsest rollup whose width
 * divides `bucketMs` (and whose buckets line up with `originMs`), finer rollups
 * for the edges it cannot cover, and raw points only for what is left (less
 * than a minute at each end). Returns only raw points when no rollup divides the buckets.
 */
export function planHistorySpans(start: number, end: number, bucketMs: number, originMs: number): HistorySpan[] {
  const usable = ROLLUP_WIDTHS_MS.filter((w) => bucketMs % w === 0 && originMs % w === 0);
  const spans: HistorySpan[] = [];
  // From the coarsest width down: each finer width covers what lies between its own aligned
  // edges and those of the coarser one (a finer width's edges are never inside a coarser one's).
  let covered: { from: number; to: number } | undefined;
  for (const widthMs of [...usable].reverse()) {
    const from = Math.ceil(start / widthMs) * widthMs;
    const to = Math.floor(end / widthMs) * widthMs;
    if (from >= to) continue;
    if (!covered) {
      spans.push({ widthMs, from, to });
    } else {
      if (from < covered.from) spans.push({ widthMs, from, to: covered.from });
      if (covered.to < to) spans.push({ widthMs, from: covered.to, to });
    }
    covered = { from, to };
  }
  if (!covered) return [{ widthMs: 0, from: start, to: end }];
  if (start < covered.from) spans.push({ widthMs: 0, from: start, to: covered.from });
  if (covered.to < end) spans.push({ widthMs: 0, from: covered.to, to: end });
  return spans;
}
