import crypto from 'node:crypto';
import { AggregationKind, PointRow, StoredPoint, TelemetryStore } from '../../src/store/telemetry-store';

/** A store under test and how to dispose of it. */
export interface StoreFixture {
  store: TelemetryStore;
  close(): Promise<void>;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function tenant(): string {
  return `t${crypto.randomBytes(5).toString('hex')}`;
}

function row(tenantId: string, deviceId: string, metric: string, time: number, value: PointRow["value"], messageId: string = crypto.randomUUID(), pointIndex = 0): PointRow {
  return { tenantId, deviceId, metric, time: new Date(time), messageId, pointIndex, value };
}

function plain(points: StoredPoint[]) {
  return points.map((p) => ({ deviceId: p.deviceId, metric: p.metric, time: p.time.getTime(), value: p.value }));
}

/** Independent reference aggregation: what a bucket should hold. */
function expectedBuckets(rows: PointRow[], origin: number, width: number) {
  const buckets = new Map<number, PointRow[]>();
  for (const r of rows) {
    const start = origin + Math.floor((r.time.getTime() - origin) / width) * width;
    if (!buckets.has(start)) buckets.set(start, []);
    buckets.get(start)!.push(r);
  }
  return [...buckets.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([start, rs]) => {
      const vs = rs.map((r) => r.value.number ?? (r.value.bool ? 1 : 0));
      const sorted = [...rs].sort((a, b) => a.time.getTime() - b.time.getTime());
      const lastRow = sorted[sorted.length - 1];
      const sum = vs.reduce((a, b) => a + b, 0);
      return {
        start,
        count: rs.length,
        min: Math.min(...vs),
        max: Math.max(...vs),
        sum,
        avg: sum / vs.length,
        last: lastRow.value.number ?? (lastRow.value.bool ? 1 : 0),
      };
    });
}

/**
 * The behaviour every {@link TelemetryStore} must have. Call inside a test
 * file with a factory giving a fresh, empty store.
 */
export function describeTelemetryStoreContract(name: string, open: () => Promise<StoreFixture>): void {
  describe(`TelemetryStore contract: ${name}`, () => {
    let fixture: StoreFixture;
    let store: TelemetryStore;
    const base = Date.UTC(2026, 10, 20, 10, 0, 0);

    beforeAll(async () => {
      fixture = await open();
      store = fixture.store;
    });
    afterAll(async () => {
      await fixture?.close();
    });

    test('stores number, bool and string samples and returns them oldest first', async () => {
      const t = tenant();
      const rows = [
        row(t, 'd1', 'temp', base + 2000, { number: 21.5 }),
        row(t, 'd1', 'door', base + 1000, { bool: true }),
        row(t, 'd1', 'note', base + 3000, { string: 'tab\there\nnewline \\ backslash' }),
        row(t, 'd1', 'temp', base, { number: -1e-300 }),
      ];
      expect(await store.write(rows)).toEqual({ inserted: 4 });
      const page = await store.points({ tenantId: t, deviceId: 'd1', metrics: [], start: new Date(base - 1), end: new Date(base + DAY), limit: 100 });
      expect(plain(page.points)).toEqual([
        { deviceId: 'd1', metric: 'temp', time: base, value: { number: -1e-300 } },
        { deviceId: 'd1', metric: 'door', time: base + 1000, value: { bool: true } },
        { deviceId: 'd1', metric: 'temp', time: base + 2000, value: { number: 21.5 } },
        { deviceId: 'd1', metric: 'note', time: base + 3000, value: { string: 'tab\there\nnewline \\ backslash' } },
      ]);
      expect(page.next).toBeUndefined();
    });

    test('writing the same points again, or twice in one batch, stores them once', async () => {
      const t = tenant();
      const rows = [0, 1, 2].map((i) => row(t, 'd1', 'temp', base + i * 1000, { number: i }, 'msg-1', i));
      expect(await store.write([...rows, rows[0]])).toEqual({ inserted: 3 });
      expect(await store.write(rows)).toEqual({ inserted: 0 });
      expect(await store.write([...rows, row(t, 'd1', 'temp', base + 5000, { number: 5 }, 'msg-2', 0)])).toEqual({ inserted: 1 });
      const page = await store.points({ tenantId: t, deviceId: 'd1', metrics: ['temp'], start: new Date(base - DAY), end: new Date(base + DAY), limit: 100 });
      expect(page.points.map((p) => p.value.number)).toEqual([0, 1, 2, 5]);
    });

    test('latest returns the newest sample per device and metric, filtered, never older data', async () => {
      const t = tenant();
      await store.write([
        row(t, 'd1', 'temp', base + 1000, { number: 1 }),
        row(t, 'd1', 'temp', base + 3000, { number: 3 }),
        row(t, 'd1', 'hum', base + 2000, { number: 50 }),
        row(t, 'd2', 'temp', base + 1000, { number: 7 }),
      ]);
      // An older sample arriving late does not replace the newer one.
      await store.write([row(t, 'd1', 'temp', base + 2000, { number: 2 })]);
      expect(plain(await store.latest(t, [], [], 100))).toEqual([
        { deviceId: 'd1', metric: 'hum', time: base + 2000, value: { number: 50 } },
        { deviceId: 'd1', metric: 'temp', time: base + 3000, value: { number: 3 } },
        { deviceId: 'd2', metric: 'temp', time: base + 1000, value: { number: 7 } },
      ]);
      expect(plain(await store.latest(t, ['d2'], [], 100)).map((p) => p.deviceId)).toEqual(['d2']);
      expect(plain(await store.latest(t, [], ['hum'], 100)).map((p) => p.metric)).toEqual(['hum']);
      expect(await store.latest(t, [], [], 2)).toHaveLength(2);
      expect(await store.latest(tenant(), [], [], 100)).toEqual([]);
    });

    test('history buckets and aggregations match values computed independently', async () => {
      const t = tenant();
      const rows: PointRow[] = [];
      // Deterministic pseudo-random values over 2 hours, every 37 s, two metrics.
      let seed = 42;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 100 - 20;
      for (let time = base; time < base + 2 * HOUR; time += 37_000) {
        rows.push(row(t, 'd1', 'temp', time, { number: Math.round(rnd() * 1000) / 1000 }));
        rows.push(row(t, 'd1', 'on', time, { bool: rnd() > 30 }));
      }
      rows.push(row(t, 'd2', 'temp', base + 1000, { number: 1e6 })); // another device: must not count
      rows.push(row(t, 'd1', 'label', base + 1000, { string: 'x' })); // non-numeric: ignored
      await store.write(rows);
      const width = 10 * 60_000;
      const start = base + 5 * 60_000;
      const end = base + 95 * 60_000;
      const kinds: AggregationKind[] = ['min', 'max', 'avg', 'sum', 'count', 'last'];
      const series = await store.history({ tenantId: t, deviceId: 'd1', metrics: ['temp', 'on', 'label'], start: new Date(start), end: new Date(end), bucketMs: width, origin: new Date(0), aggregations: kinds });
      expect(series.map((s) => s.metric)).toEqual(['temp', 'on', 'label']);
      expect(series[2].buckets).toEqual([]);
      for (const s of series.slice(0, 2)) {
        const inRange = rows.filter((r) => r.deviceId === 'd1' && r.metric === s.metric && r.time.getTime() >= start && r.time.getTime() < end);
        const expected = expectedBuckets(inRange, 0, width);
        expect(s.buckets.map((b) => b.start.getTime())).toEqual(expected.map((e) => e.start));
        s.buckets.forEach((b, i) => {
          const e = expected[i];
          expect(b.count).toBe(BigInt(e.count));
          expect(b.values.count).toBe(e.count);
          expect(b.values.min).toBeCloseTo(e.min, 9);
          expect(b.values.max).toBeCloseTo(e.max, 9);
          expect(b.values.sum).toBeCloseTo(e.sum, 6);
          expect(b.values.avg).toBeCloseTo(e.avg, 9);
          expect(b.values.last).toBeCloseTo(e.last, 9);
        });
      }
      // Buckets aligned to the range start instead of the epoch.
      const shifted = await store.history({ tenantId: t, deviceId: 'd1', metrics: ['temp'], start: new Date(start), end: new Date(end), bucketMs: 7 * 60_000, origin: new Date(start), aggregations: ['count'] });
      const inRange = rows.filter((r) => r.deviceId === 'd1' && r.metric === 'temp' && r.time.getTime() >= start && r.time.getTime() < end);
      expect(shifted[0].buckets.map((b) => [b.start.getTime(), Number(b.count)])).toEqual(expectedBuckets(inRange, start, 7 * 60_000).map((e) => [e.start, e.count]));
    });

    test('history by device buckets one metric of each device named, matching values computed independently', async () => {
      const t = tenant();
      const rows: PointRow[] = [];
      let seed = 7;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 100 - 20;
      for (let time = base; time < base + 2 * HOUR; time += 41_000) {
        for (const d of ['d1', 'd2', 'd3']) rows.push(row(t, d, 'temp', time + (d === 'd2' ? 13_000 : 0), { number: Math.round(rnd() * 1000) / 1000 }));
        rows.push(row(t, 'd1', 'other', time, { number: 1e6 })); // another metric: must not count
      }
      await store.write(rows);
      const width = 15 * 60_000;
      // Mid-minute ends: rollups inside, raw points at the edges.
      const start = base + 5 * 60_000 + 20_000;
      const end = base + 100 * 60_000 + 7_000;
      const series = await store.historyByDevice({ tenantId: t, deviceIds: ['d2', 'd1', 'missing'], metric: 'temp', start: new Date(start), end: new Date(end), bucketMs: width, origin: new Date(0) });
      expect(series.map((s) => s.deviceId)).toEqual(['d1', 'd2']);
      for (const s of series) {
        const expected = expectedBuckets(rows.filter((r) => r.deviceId === s.deviceId && r.metric === 'temp' && r.time.getTime() >= start && r.time.getTime() < end), 0, width);
        expect(s.buckets.map((b) => [b.start.getTime(), Number(b.count)])).toEqual(expected.map((e) => [e.start, e.count]));
        s.buckets.forEach((b, i) => {
          expect(b.values.min).toBeCloseTo(expected[i].min, 9);
          expect(b.values.max).toBeCloseTo(expected[i].max, 9);
          expect(b.values.sum).toBeCloseTo(expected[i].sum, 6);
          expect(b.values.avg).toBeCloseTo(expected[i].avg, 9);
        });
      }
    });

    test('pages through raw points with keyset cursors, filtered by metric and time', async () => {
      const t = tenant();
      const rows: PointRow[] = [];
      for (let i = 0; i < 23; i++) {
        // Several points share a time to exercise the tie-breakers.
        rows.push(row(t, 'd1', i % 2 ? 'a' : 'b', base + Math.floor(i / 3) * 1000, { number: i }, `m${i % 4}`, i));
      }
      rows.push(row(t, 'd1', 'c', base + 500, { number: 99 }));
      rows.push(row(t, 'd9', 'a', base + 500, { number: 98 }));
      await store.write(rows);
      const seen: StoredPoint[] = [];
      let after;
      let pages = 0;
      do {
        const page = await store.points({ tenantId: t, deviceId: 'd1', metrics: ['a', 'b'], start: new Date(base), end: new Date(base + 7000), after, limit: 4 });
        seen.push(...page.points);
        after = page.next;
        pages++;
      } while (after && pages < 50);
      const expected = rows
        .filter((r) => r.deviceId === 'd1' && r.metric !== 'c' && r.time.getTime() < base + 7000)
        .sort((x, y) => x.time.getTime() - y.time.getTime() || (x.metric < y.metric ? -1 : x.metric > y.metric ? 1 : 0) || (x.messageId < y.messageId ? -1 : x.messageId > y.messageId ? 1 : 0) || x.pointIndex - y.pointIndex);
      expect(seen.map((p) => p.value.number)).toEqual(expected.map((r) => r.value.number));
      expect(pages).toBe(Math.ceil(expected.length / 4));
    });

    test('retention drops whole old days and keeps everything newer', async () => {
      const t = tenant();
      const old = Date.UTC(2026, 9, 1, 12);
      await store.write([
        row(t, 'd1', 'temp', old, { number: 1 }),
        row(t, 'd1', 'temp', old + DAY, { number: 2 }),
        row(t, 'd1', 'temp', old + 3 * DAY, { number: 3 }),
      ]);
      // The cut is at the start of the third day: the first two days go, the rest stays.
      await store.dropBefore(new Date(Date.UTC(2026, 9, 3)));
      const left = await store.points({ tenantId: t, deviceId: 'd1', metrics: [], start: new Date(old - DAY), end: new Date(old + 10 * DAY), limit: 100 });
      expect(left.points.map((p) => p.value.number)).toEqual([3]);
    });

    test('per-tenant deletion removes only that tenant’s older samples', async () => {
      const t1 = tenant();
      const t2 = tenant();
      const rows = [t1, t2].flatMap((t) => [0, 1, 2, 3, 4].map((i) => row(t, 'd1', 'temp', base + i * HOUR, { number: i })));
      await store.write(rows);
      expect(await store.deleteTenantBefore(t1, new Date(base + 2 * HOUR + 1), 2)).toBe(3);
      const q = (t: string) => store.points({ tenantId: t, deviceId: 'd1', metrics: [], start: new Date(base - DAY), end: new Date(base + DAY), limit: 100 });
      expect((await q(t1)).points.map((p) => p.value.number)).toEqual([3, 4]);
      expect((await q(t2)).points.map((p) => p.value.number)).toEqual([0, 1, 2, 3, 4]);
    });

    test('tenants never see each other’s data', async () => {
      const t1 = tenant();
      const t2 = tenant();
      await store.write([row(t1, 'shared', 'temp', base, { number: 1 })]);
      expect(await store.latest(t2, ['shared'], [], 10)).toEqual([]);
      expect((await store.points({ tenantId: t2, deviceId: 'shared', metrics: [], start: new Date(base - DAY), end: new Date(base + DAY), limit: 10 })).points).toEqual([]);
      const h = await store.history({ tenantId: t2, deviceId: 'shared', metrics: ['temp'], start: new Date(base - DAY), end: new Date(base + DAY), bucketMs: HOUR, origin: new Date(0), aggregations: ['count'] });
      expect(h[0].buckets).toEqual([]);
    });
  });
}
