import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { Aggregation, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { createLogger, createPool, insecureClient, Pool, unary } from '@iot-mesh/runtime';
import { createSensor } from '../../../simulator/src/profiles';
import { Latencies, nowMs } from '../measure';
import { Figure, ScenarioResult } from '../report';
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

/** The aggregate QueryHistory asks the database for: average per bucket with date_bin, as the service's query does. */
const HISTORY_SQL = `SELECT metric, date_bin(make_interval(secs => $6::float8 / 1000), time, $7::timestamptz) AS bucket, avg(v) AS avg, count(*) AS count
  FROM (SELECT metric, time, coalesce(number_value, bool_value::int::float8) AS v FROM points
         WHERE tenant_id = $1 AND device_id = $2 AND metric = ANY($3) AND time >= $4 AND time < $5) s
 WHERE v IS NOT NULL GROUP BY metric, bucket ORDER BY metric, bucket`;

/**
 * Scenario 4: history. One metric of one device at 1 Hz for 7 days (604,800
 * points, loaded by COPY straight into monitoring's table: the ingest path
 * refuses samples a week old) queried as 1,000 buckets through QueryHistory
 * (authenticated gRPC to the monitoring service); the baseline is the same
 * aggregate query run directly against PostgreSQL from this process — what
 * the database alone takes.
 */
export const historyScenario: Scenario = {
  name: 'history',
  title: 'history: 7 days at 1 Hz of one metric, queried as 1,000 buckets',
  async run(ctx) {
    const platform = await ctx.platform();
    const days = ctx.smoke ? 0.05 : 7;
    const total = Math.round(days * 86_400);
    const queries = ctx.smoke ? 5 : 20;
    const tenantId = platform.tenantId;
    const deviceId = `hist-${Date.now().toString(36)}`;
    const metric = 'temperature';
    const figures: Figure[] = [];
    const notes: string[] = [];
    const result: ScenarioResult = { scenario: 'history', title: this.title, parameters: { points: total, buckets: 1000, queries, aggregation: 'avg' }, figures, notes };
    const pool = createPool(platform.db.url, 'monitoring', createLogger('bench', 'silent'), 4);
    const client = insecureClient(TelemetryServiceClient, platform.monitoring!.address);
    try {
      // The last whole second, so the range holds exactly `total` points.
      const end = Math.floor(Date.now() / SECOND) * SECOND;
      const start = end - total * SECOND;
      const sensor = createSensor('weather', 7);
      ctx.log(`  loading ${total.toLocaleString('en-US')} points…`);
      const loadStarted = nowMs();
      await ensureDayPartitions(pool, start, end);
      const batch = 20_000;
      for (let i = 0; i < total; i += batch) {
        let lines = '';
        const n = Math.min(total, i + batch) - i;
        for (let j = i; j < i + n; j++) {
          const time = new Date(start + j * SECOND);
          lines += `${tenantId}\t${deviceId}\t${metric}\t${time.toISOString()}\th-${j}\t0\t${sensor.read(time)[0].value as number}\n`;
        }
        await copyPoints(pool, lines);
        if ((i / batch) % 5 === 4) ctx.log(`    ${(i + n).toLocaleString('en-US')} points (${((nowMs() - loadStarted) / 1000).toFixed(0)} s)`);
      }
      const loadS = (nowMs() - loadStarted) / 1000;
      await pool.query('ANALYZE points');
      notes.push(`loaded ${total.toLocaleString('en-US')} points by COPY in ${loadS.toFixed(1)} s (${Math.round(total / loadS).toLocaleString('en-US')} rows/s), then ANALYZE`);

      const request = {
        deviceId,
        metrics: [metric],
        timeRange: { start: new Date(start), end: new Date(end) },
        maxPoints: 1000,
        aggregations: [Aggregation.AGGREGATION_AVG],
      };
      const viaService = new Latencies();
      let buckets = 0;
      for (let i = 0; i < queries + 3; i++) {
        const t = nowMs();
        const response = await unary(client, client.queryHistory, request, { authorization: platform.authorization, deadlineMs: 30_000 });
        if (i >= 3) viaService.add(nowMs() - t);
        buckets = response.series[0]?.buckets.length ?? 0;
      }
      const bucketMs = Math.ceil((end - start) / 1000);
      const direct = new Latencies();
      for (let i = 0; i < queries + 3; i++) {
        const t = nowMs();
        await pool.query(HISTORY_SQL, [tenantId, deviceId, [metric], new Date(start), new Date(end), bucketMs, new Date(start)]);
        if (i >= 3) direct.add(nowMs() - t);
      }
      const s = viaService.summary();
      const d = direct.summary();
      figures.push(
        { measure: 'QueryHistory p50', value: s.p50, unit: 'ms', baseline: 'SQL query direct', baselineValue: d.p50 },
        { measure: 'QueryHistory p95', value: s.p95, unit: 'ms', baseline: 'SQL query direct', baselineValue: d.p95, target: 'p95 ≤ 100 ms', met: ctx.smoke ? undefined : s.p95 <= 100 },
      );
      notes.push(`${buckets} buckets per answer (bucket width ${bucketMs / 1000} s); ${queries} timed queries each way after 3 warm-ups, one at a time`);
      if (!ctx.smoke && buckets < 990) notes.push(`expected about 1,000 buckets, got ${buckets}`);
    } finally {
      client.close();
      await pool.end();
    }
    return result;
  },
};
