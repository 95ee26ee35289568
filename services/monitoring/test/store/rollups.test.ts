import fc from 'fast-check';
import { createLogger, Pool } from '@iot-mesh/runtime';
import { planBuckets } from '../../src/domain/telemetry';
import { applyRollupRetention } from '../../src/domain/retention';
import { PostgresTelemetryStore } from '../../src/store/postgres-store';
import { isLater, numericValue, planHistorySpans } from '../../src/store/rollups';
import type { AggregationKind, HistoryBucket, PointRow } from '../../src/store/telemetry-store';
import { migratedDatabase } from '../helpers';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Three whole UTC days: data crosses minute, hour and day boundaries. */
const BASE = Date.UTC(2026, 10, 20);
const SPAN = 3 * DAY;
const KINDS: AggregationKind[] = ['min', 'max', 'avg', 'sum', 'count', 'last'];

let pool: Pool;
let close: () => Promise<void>;
let store: PostgresTelemetryStore;
let run = 0;

beforeAll(async () => {
  ({ pool, close } = await migratedDatabase());
  store = new PostgresTelemetryStore(pool);
});
afterAll(async () => {
  await close?.();
});

/** Instants anywhere in the span, and many close to minute/hour/day edges (where rollups meet raw points). */
const instant = fc.oneof(
  fc.integer({ min: 0, max: SPAN - 1 }),
  fc
    .tuple(fc.constantFrom(DAY, DAY + HOUR, 2 * DAY - MINUTE, 30 * HOUR, 50 * HOUR + 30 * MINUTE), fc.integer({ min: -3 * MINUTE, max: 3 * MINUTE }))
    .map(([edge, offset]) => edge + offset),
);

const point = fc.record({
  metric: fc.constantFrom('a', 'b'),
  offset: instant,
  messageId: fc.constantFrom('m0', 'm1', 'm2', 'x9'),
  pointIndex: fc.integer({ min: 0, max: 2 }),
  value: fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: -1000, max: 1000 }).map((number) => ({ number })) },
    { weight: 1, arbitrary: fc.boolean().map((bool) => ({ bool })) },
    { weight: 1, arbitrary: fc.constant({ string: 'text' }) },
  ),
});

/** Rollup widths and widths no rollup divides (answered from raw points). */
const width = fc.constantFrom(MINUTE, 2 * MINUTE, 15 * MINUTE, HOUR, 3 * HOUR, DAY, 2 * DAY, 7_000, 90_000);

/** The store's answer computed from the points directly: the oracle. */
function expectedBuckets(points: PointRow[], metric: string, start: number, end: number, bucketMs: number): HistoryBucket[] {
  const buckets = new Map<number, { rows: PointRow[] }>();
  for (const p of points) {
    const t = p.time.getTime();
    if (p.metric !== metric || t < start || t >= end || numericValue(p) === undefined) continue;
    const b = Math.floor(t / bucketMs) * bucketMs;
    if (!buckets.has(b)) buckets.set(b, { rows: [] });
    buckets.get(b)!.rows.push(p);
  }
  return [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([b, { rows }]) => {
      const values = rows.map((r) => numericValue(r)!);
      const sum = values.reduce((s, v) => s + v, 0);
      const key = (r: PointRow) => ({ time: r.time.getTime(), messageId: r.messageId, pointIndex: r.pointIndex });
      const last = rows.reduce((best, r) => (isLater(key(r), key(best)) ? r : best));
      return {
        start: new Date(b),
        count: BigInt(rows.length),
        values: { min: Math.min(...values), max: Math.max(...values), sum, avg: sum / rows.length, count: rows.length, last: numericValue(last)! },
      };
    });
}

test('history from rollups equals aggregation of the raw points, for random data, redeliveries, ranges and widths', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(point, { minLength: 1, maxLength: 120 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.tuple(fc.integer({ min: -HOUR, max: SPAN + HOUR }), fc.integer({ min: 1, max: SPAN }), width), { minLength: 1, maxLength: 4 }),
      async (generated, batches, queries) => {
        const tenantId = `prop${run++}`;
        // A point's identity fixes its value, as a redelivered message carries the same payload.
        const byIdentity = new Map<string, PointRow>();
        const rows = generated.map((g) => {
          const row: PointRow = { tenantId, deviceId: 'd1', metric: g.metric, time: new Date(BASE + g.offset), messageId: g.messageId, pointIndex: g.pointIndex, value: g.value };
          const id = `${g.metric}/${g.offset}/${g.messageId}/${g.pointIndex}`;
          if (!byIdentity.has(id)) byIdentity.set(id, row);
          return { ...row, value: byIdentity.get(id)!.value };
        });
        // Overlapping batches: every point is written at least once, many twice (redelivery).
        const size = Math.ceil(rows.length / batches);
        for (let i = 0; i < rows.length; i += size) await store.write(rows.slice(Math.max(0, i - Math.floor(size / 2)), i + size));
        await store.write(rows.slice(0, Math.ceil(rows.length / 3)));
        const unique = [...byIdentity.values()];
        for (const [from, length, bucketMs] of queries) {
          const start = BASE + from;
          const end = start + length;
          const answer = await store.history({ tenantId, deviceId: 'd1', metrics: ['a', 'b'], start: new Date(start), end: new Date(end), bucketMs, origin: new Date(0), aggregations: KINDS });
          for (const series of answer) {
            const expected = expectedBuckets(unique, series.metric, start, end, bucketMs);
            expect(series.buckets.map((b) => [b.start.getTime(), b.count, b.values.min, b.values.max, b.values.sum, b.values.last])).toEqual(
              expected.map((b) => [b.start.getTime(), b.count, b.values.min, b.values.max, b.values.sum, b.values.last]),
            );
            series.buckets.forEach((b, i) => expect(b.values.avg).toBeCloseTo(expected[i].values.avg, 9));
          }
        }
      },
    ),
    { numRuns: 40 },
  );
});

test('the spans a history query reads cover its range exactly once, raw points only within a minute of its ends', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 400 * DAY }), fc.integer({ min: 1, max: 100 * DAY }), width, (start, length, bucketMs) => {
      const end = start + length;
      const spans = planHistorySpans(start, end, bucketMs, 0).sort((a, b) => a.from - b.from);
      expect(spans[0].from).toBe(start);
      expect(spans[spans.length - 1].to).toBe(end);
      spans.slice(1).forEach((s, i) => expect(s.from).toBe(spans[i].to));
      for (const s of spans) {
        expect(s.from).toBeLessThan(s.to);
        if (s.widthMs > 0) {
          expect(bucketMs % s.widthMs).toBe(0);
          expect(s.from % s.widthMs).toBe(0);
          expect(s.to % s.widthMs).toBe(0);
        } else if (bucketMs % MINUTE === 0) {
          expect(s.to - s.from).toBeLessThan(MINUTE);
        }
      }
    }),
  );
});

test('chosen buckets start on whole seconds and are at most max_points, counting partial ones', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 400 * DAY }), fc.integer({ min: 1000, max: 120 * DAY }), fc.integer({ min: 1, max: 10_000 }), (start, length, maxPoints) => {
      const { bucketMs, origin } = planBuckets(new Date(start), new Date(start + length), undefined, maxPoints);
      expect(origin.getTime()).toBe(0);
      if (bucketMs >= 1000) expect(bucketMs % 1000).toBe(0);
      const buckets = Math.floor((start + length - 1) / bucketMs) - Math.floor(start / bucketMs) + 1;
      expect(buckets).toBeLessThanOrEqual(maxPoints);
    }),
  );
  // 7 days as 1,000 buckets: 15-minute buckets (minute rollups divide them), not 604.8 s.
  expect(planBuckets(new Date(BASE), new Date(BASE + 7 * DAY), undefined, 1000).bucketMs).toBe(15 * MINUTE);
});

test('history over whole days survives the raw points’ retention through the rollups, until the rollups’ own retention', async () => {
  const tenantId = 'kept';
  const old = Date.UTC(2026, 0, 10);
  const rows: PointRow[] = Array.from({ length: 48 }, (_, i) => ({ tenantId, deviceId: 'd1', metric: 'a', time: new Date(old + i * HOUR), messageId: `m${i}`, pointIndex: 0, value: { number: i } }));
  await store.write(rows);
  const query = { tenantId, deviceId: 'd1', metrics: ['a'], start: new Date(old), end: new Date(old + 2 * DAY), bucketMs: DAY, origin: new Date(0), aggregations: KINDS };
  const before = await store.history(query);
  await store.dropBefore(new Date(old + 3 * DAY));
  expect((await pool.query(`SELECT count(*)::int AS n FROM points WHERE tenant_id = $1`, [tenantId])).rows[0].n).toBe(0);
  const after = await store.history(query);
  expect(after).toEqual(before);
  expect(after[0].buckets.map((b) => [b.count, b.values.sum, b.values.last])).toEqual([
    [24n, 276, 23],
    [24n, 852, 47],
  ]);
  await applyRollupRetention(store, old + 3 * DAY, 1, createLogger('test', 'silent'));
  expect((await store.history(query))[0].buckets).toEqual([]);
});
