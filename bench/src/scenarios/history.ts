import { Aggregation, TelemetryServiceClient } from '../../../gen/ts/iot/monitoring/v1/telemetry';
import { PostgresTelemetryStore } from '../../../services/monitoring/src/store/postgres-store';
import { PointRow } from '../../../services/monitoring/src/store/telemetry-store';
import { insecureClient, unary } from '@iot-mesh/runtime';
import { createLogger } from '@iot-mesh/runtime';
import { createPool } from '@iot-mesh/runtime';
import { createSensor } from '../../../simulator/src/profiles';
import { Latencies, nowMs } from '../measure';
import { Figure, ScenarioResult } from '../report';
import { Scenario } from '../scenario';

const SECOND = 1000;

/**
 * Scenario 4: history. One metric of one device at 1 Hz for 7 days (604,800
 * points, written through the telemetry store's own write path) queried as
 * 1,000 buckets through QueryHistory (authenticated gRPC to the monitoring
 * service); the baseline is the same store query run directly against
 * PostgreSQL from this process — what the database alone takes.
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
    const store = new PostgresTelemetryStore(pool);
    const client = insecureClient(TelemetryServiceClient, platform.monitoring!.address);
    try {
      // The last whole second, so the range holds exactly `total` points.
      const end = Math.floor(Date.now() / SECOND) * SECOND;
      const start = end - total * SECOND;
      const sensor = createSensor('weather', 7);
      ctx.log(`  loading ${total.toLocaleString('en-US')} points…`);
      const loadStarted = nowMs();
      const batch = 20_000;
      for (let i = 0; i < total; i += batch) {
        const rows: PointRow[] = [];
        for (let j = i; j < Math.min(total, i + batch); j++) {
          const time = new Date(start + j * SECOND);
          rows.push({ tenantId, deviceId, metric, time, messageId: `h-${j}`, pointIndex: 0, value: { number: sensor.read(time)[0].value as number } });
        }
        await store.write(rows);
        if ((i / batch) % 5 === 4) ctx.log(`    ${(i + rows.length).toLocaleString('en-US')} points (${((nowMs() - loadStarted) / 1000).toFixed(0)} s)`);
      }
      const loadS = (nowMs() - loadStarted) / 1000;
      await pool.query('ANALYZE points');
      notes.push(`loaded ${total.toLocaleString('en-US')} points through the store's write path in ${loadS.toFixed(1)} s (${Math.round(total / loadS).toLocaleString('en-US')} rows/s), then ANALYZE`);

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
        await store.history({ tenantId, deviceId, metrics: [metric], start: new Date(start), end: new Date(end), bucketMs, origin: new Date(start), aggregations: ['avg'] });
        if (i >= 3) direct.add(nowMs() - t);
      }
      const s = viaService.summary();
      const d = direct.summary();
      figures.push(
        { measure: 'QueryHistory p50', value: s.p50, unit: 'ms', baseline: 'store query direct', baselineValue: d.p50 },
        { measure: 'QueryHistory p95', value: s.p95, unit: 'ms', baseline: 'store query direct', baselineValue: d.p95, target: 'p95 ≤ 100 ms', met: ctx.smoke ? undefined : s.p95 <= 100 },
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
