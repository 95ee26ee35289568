import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { Aggregation, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { createLogger, createPool, insecureClient, Pool, unary } from '@iot-mesh/runtime';
import { createSensor } from '../../../simulator/src/profiles';
import { Latencies, nowMs } from '../measure';
import { Curve, Figure, ScenarioResult } from '../report';
import { Scenario } from '../scenario';

const SECOND = 1000;
const DAY = 86_400_000;

/**
 * Day partitions of monitoring's `points` table covering [start, end], named
 * as the service names them (`points_pYYYYMMDD`, see its migrations), so its
 * retention drops them like its own.
 */
async function ensureDayPartitions(pool: Pool, start: number, end: number): Promise<void> {
  for (let day = Math.floor(start / DAY) * DAY; day <= end; day += DAY) {
    const from = new Date(day);
    const name = `points_p${from.toISOString().slice(0, 10).replace(/-/g, '')}`;
    try {
      await pool.query(`CREATE TABLE IF NOT EXISTS ${name} PARTITION OF points FOR VALUES FROM ('${from.toISOString()}') TO ('${new Date(day + DAY).toISOString()}')`);
    } catch (err) {
      // The service created the same partition at the same moment: it exists, which is all we need.
      if (!['42P07', '23505'].includes((err as { code?: string }).code ?? '')) throw err;
    }
  }
}

/** Loads rows into monitoring's `points` table by COPY (its column layout is the contract here, not its code). */
async function copyPoints(pool: Pool, lines: string): Promise<void> {
  const client = await pool.connect();
  try {
    await pipeline(
      Readable.from([lines]),
      client.query(copyFrom('COPY points (tenant_id, device_id, metric, time, message_id, point_index, number_value) FROM STDIN')),
    );
  } finally {
    client.release();
  }
}

/** The same buckets computed from raw points by PostgreSQL alone (what history cost before rollups): average per bucket with date_bin. */
const HISTORY_SQL = `SELECT metric, date_bin(make_interval(secs => $6::float8 / 1000), time, $7::timestamptz) AS bucket, avg(v) AS avg, count(*) AS count
  FROM (SELECT metric, time, coalesce(number_value, bool_value::int::float8) AS v FROM points
         WHERE tenant_id = $1 AND device_id = $2 AND metric = ANY($3) AND time >= $4 AND time < $5) s
 WHERE v IS NOT NULL GROUP BY metric, bucket ORDER BY metric, bucket`;

/**
 * Builds the minute/hour/day rollups of the points loaded by COPY (which
 * bypasses the writer that maintains them), in monitoring's `rollups` layout
 * (its migrations are the contract here, as for `points`).
 */
const ROLLUP_SQL = `INSERT INTO rollups
SELECT tenant_id, device_id, metric, w.width_s, to_timestamp(floor(extract(epoch FROM time) / w.width_s) * w.width_s) AS bucket,
       count(*), sum(v), min(v), max(v),
       (array_agg(v ORDER BY time DESC, message_id DESC, point_index DESC))[1],
       (array_agg(time ORDER BY time DESC, message_id DESC, point_index DESC))[1],
       (array_agg(message_id ORDER BY time DESC, message_id DESC, point_index DESC))[1],
       (array_agg(point_index ORDER BY time DESC, message_id DESC, point_index DESC))[1]
  FROM (SELECT tenant_id, device_id, metric, time, message_id, point_index, number_value AS v FROM points WHERE tenant_id = $1 AND device_id = $2) p
 CROSS JOIN (VALUES (60), (3600), (86400)) AS w (width_s)
 GROUP BY tenant_id, device_id, metric, w.width_s, bucket`;

/** A stretch of synthetic history: one point every `stepS` seconds from `fromDaysAgo` to `toDaysAgo`. */
interface LoadSpan {
  fromDaysAgo: number;
  toDaysAgo: number;
  stepS: number;
}

/**
 * Scenario 4: history. One metric of one device: the last 7 days at 1 Hz
 * (604,800 points) and, older, up to 90 days at one point per 10 s (90 days
 * at 1 Hz would be 7.8 M points, several minutes of loading and ~1.5 GB on
 * this shared machine; past the first day QueryHistory reads hour rollups,
 * whose size does not depend on the density). Loaded by COPY straight into
 * monitoring's table (the ingest path refuses samples a week old), rollups
 * built from them; then the last 1, 7, 30 and 90 days queried as at most
 * 1,000 buckets through QueryHistory (authenticated gRPC to the monitoring
 * service). The baseline is the same buckets aggregated from the raw points
 * by PostgreSQL directly from this process — what history cost without rollups.
 */
export const historyScenario: Scenario = {
  name: 'history',
  title: 'history: the last 1, 7, 30 and 90 days of one metric as 1,000 buckets',
  async run(ctx) {
    const platform = await ctx.platform();
    const load: LoadSpan[] = ctx.smoke
      ? [{ fromDaysAgo: 0.1, toDaysAgo: 0, stepS: 1 }]
      : [
          { fromDaysAgo: 90, toDaysAgo: 7, stepS: 10 },
          { fromDaysAgo: 7, toDaysAgo: 0, stepS: 1 },
        ];
    const rangesDays = ctx.smoke ? [0.02, 0.1] : [1, 7, 30, 90];
    const queries = ctx.smoke ? 5 : 20;
    const tenantId = platform.tenantId;
    const deviceId = `hist-${Date.now().toString(36)}`;
    const metric = 'temperature';
    const figures: Figure[] = [];
    const notes: string[] = [];
    const curve: Curve = { name: 'history-p95', title: 'history p95 against the range queried (≤ 1,000 buckets)', xLabel: 'days', yLabel: 'p95 ms', logX: true, points: [] };
    const result: ScenarioResult = { scenario: 'history', title: this.title, parameters: { load, rangesDays, maxPoints: 1000, queries, aggregation: 'avg' }, figures, notes, curves: [curve] };
    const pool = createPool(platform.db.url, 'monitoring', createLogger('bench', 'silent'), 4);
    const client = insecureClient(TelemetryServiceClient, platform.monitoring!.address);
    try {
      // The last whole second, so each range holds a whole number of points.
      const end = Math.floor(Date.now() / SECOND) * SECOND;
      const sensor = createSensor('weather', 7);
      const loadStarted = nowMs();
      let total = 0;
      for (const span of load) {
        const from = end - span.fromDaysAgo * DAY;
        const count = Math.round(((span.fromDaysAgo - span.toDaysAgo) * DAY) / (span.stepS * SECOND));
        ctx.log(`  loading ${count.toLocaleString('en-US')} points (every ${span.stepS} s, ${span.fromDaysAgo}–${span.toDaysAgo} days ago)…`);
        await ensureDayPartitions(pool, from, end);
        const batch = 20_000;
        for (let i = 0; i < count; i += batch) {
          let lines = '';
          const n = Math.min(count, i + batch) - i;
          for (let j = i; j < i + n; j++) {
            const time = new Date(from + j * span.stepS * SECOND);
            lines += `${tenantId}\t${deviceId}\t${metric}\t${time.toISOString()}\th-${time.getTime()}\t0\t${sensor.read(time)[0].value as number}\n`;
          }
          await copyPoints(pool, lines);
          if ((i / batch) % 10 === 9) ctx.log(`    ${(total + i + n).toLocaleString('en-US')} points (${((nowMs() - loadStarted) / 1000).toFixed(0)} s)`);
        }
        total += count;
      }
      const loadS = (nowMs() - loadStarted) / 1000;
      const rollupStarted = nowMs();
      await pool.query(ROLLUP_SQL, [tenantId, deviceId]);
      const rollupS = (nowMs() - rollupStarted) / 1000;
      await pool.query('ANALYZE points');
      await pool.query('ANALYZE rollups');
      notes.push(
        `loaded ${total.toLocaleString('en-US')} points by COPY in ${loadS.toFixed(1)} s (${Math.round(total / loadS).toLocaleString('en-US')} rows/s), built their rollups in ${rollupS.toFixed(1)} s, then ANALYZE`,
      );

      for (const days of rangesDays) {
        const start = end - days * DAY;
        const request = { deviceId, metrics: [metric], timeRange: { start: new Date(start), end: new Date(end) }, maxPoints: 1000, aggregations: [Aggregation.AGGREGATION_AVG] };
        const viaService = new Latencies();
        let buckets = 0;
        let bucketMs = 0;
        for (let i = 0; i < queries + 3; i++) {
          const t = nowMs();
          const response = await unary(client, client.queryHistory, request, { authorization: platform.authorization, deadlineMs: 30_000 });
          if (i >= 3) viaService.add(nowMs() - t);
          buckets = response.series[0]?.buckets.length ?? 0;
          bucketMs = Number(response.bucketWidth?.seconds ?? 0) * 1000 + Math.round((response.bucketWidth?.nanos ?? 0) / 1e6);
        }
        // The raw aggregate is slow over long ranges: fewer rounds there.
        const rawRounds = days >= 30 ? 5 : queries;
        const direct = new Latencies();
        for (let i = 0; i < rawRounds + 1; i++) {
          const t = nowMs();
          await pool.query(HISTORY_SQL, [tenantId, deviceId, [metric], new Date(start), new Date(end), bucketMs, new Date(0)]);
          if (i >= 1) direct.add(nowMs() - t);
        }
        const s = viaService.summary();
        const d = direct.summary();
        const target = days === 7 ? 30 : days === 90 ? 50 : undefined;
        const label = `${days} d`;
        figures.push(
          { measure: `${label}: QueryHistory p50`, value: s.p50, unit: 'ms', baseline: 'raw SQL aggregate direct', baselineValue: d.p50 },
          {
            measure: `${label}: QueryHistory p95`,
            value: s.p95,
            unit: 'ms',
            baseline: 'raw SQL aggregate direct',
            baselineValue: d.p95,
            target: target === undefined ? undefined : `p95 ≤ ${target} ms`,
            met: ctx.smoke || target === undefined ? undefined : s.p95 <= target,
          },
        );
        curve.points.push({ series: 'QueryHistory (rollups)', x: days, y: s.p95 }, { series: 'raw SQL aggregate direct', x: days, y: d.p95 });
        notes.push(`${label}: ${buckets} buckets of ${bucketMs / 1000} s; ${queries} timed queries through the service after 3 warm-ups, ${rawRounds} raw SQL after 1`);
      }
    } finally {
      client.close();
      await pool.end();
    }
    return result;
  },
};
