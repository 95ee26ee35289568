import { parse } from 'csv-parse/sync';
import { eventually, jsonPayload, MonitoringWorld, startWorld } from '@iot-mesh/monitoring/test-harness';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { startTestGateway } from './gateway-harness';

// hyparquet ships only ES modules (jest transforms them, see jest.config.js).
type HyparquetModule = typeof import('hyparquet', { with: { 'resolution-mode': 'import' } });
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { parquetReadObjects } = require('hyparquet') as HyparquetModule;

/* Export downloads through the Node gateway's /v1/export route (ExportPoints' server stream written as the HTTP body). */
describe('gateway export downloads', () => {
  let signing: TestSigning;
  let world: MonitoringWorld;
  let tenant: TestTenant;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  const start = Math.floor(Date.now() / 60_000) * 60_000 - 30 * 60_000;
  const points = Array.from({ length: 12 }, (_, i) => ({ metric: 'temperature', time: new Date(start + i * 60_000).toISOString(), numberValue: 20 + i }));

  beforeAll(async () => {
    signing = await startSigningForTest();
    world = await startWorld({ SIGNING_ADDRESS: signing.address });
    tenant = await signing.createTenant();
    await world.registerDevice(tenant.tenantId, 'pump-1', { labels: { line: 'a' } });
    gateway = await startTestGateway({ signing: signing.address, monitoring: world.services[0].service.address });
    await world.publish(tenant.tenantId, 'pump-1', jsonPayload({ messageId: 'seed', points }));
    await eventually(async () => (await world.rowCount(tenant.tenantId)) === points.length, 'seed rows');
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    await world?.close();
    await signing?.stop();
  });

  const range = () => `time_range.start=${new Date(start).toISOString()}&time_range.end=${new Date(start + 60 * 60_000).toISOString()}`;

  it('downloads a label group as CSV with the file’s media type and name', async () => {
    const res = await fetch(`${gateway.base}/v1/export?labels[line]=a&format=csv&${range()}`, { headers: { authorization: tenant.viewer.authorization } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="telemetry-points-.*\.csv"$/);
    const rows: Record<string, string>[] = parse(await res.text(), { columns: true });
    expect(rows.map((r) => [r.time, r.device_id, r.metric, Number(r.number_value)])).toEqual(points.map((p) => [p.time, 'pump-1', 'temperature', p.numberValue]));
  });

  it('downloads Parquet that hyparquet reads back', async () => {
    const res = await fetch(`${gateway.base}/v1/export?device_ids=pump-1&format=parquet&${range()}`, { headers: { authorization: tenant.viewer.authorization } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/vnd.apache.parquet');
    const rows = await parquetReadObjects({ file: await res.arrayBuffer(), columns: ['time', 'number_value'] });
    expect(rows.map((r) => [(r.time as Date).toISOString(), r.number_value])).toEqual(points.map((p) => [p.time, p.numberValue]));
  });

  it('answers a bad or unauthenticated request with a google.rpc.Status', async () => {
    const bad = await fetch(`${gateway.base}/v1/export?format=csv`, { headers: { authorization: tenant.viewer.authorization } });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 3 });
    const anonymous = await fetch(`${gateway.base}/v1/export?device_ids=pump-1`);
    expect(anonymous.status).toBe(401);
  });
});
