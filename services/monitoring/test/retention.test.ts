import { ConfigError, createLogger, loadConfig, Pool } from '@iot-mesh/runtime';
import { monitoringEnv, parseTenantRetention } from '../src/config';
import { applyRetention } from '../src/domain/retention';
import { PostgresTelemetryStore } from '../src/store/postgres-store';
import { PointRow } from '../src/store/telemetry-store';
import { migratedDatabase } from './helpers';

const DAY = 86_400_000;
let pool: Pool;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ pool, close } = await migratedDatabase());
});
afterAll(async () => {
  await close?.();
});

test('TELEMETRY_TENANT_RETENTION_DAYS is validated at start', () => {
  expect(parseTenantRetention('acme=7, beta-2=14')).toEqual(new Map([['acme', 7], ['beta-2', 14]]));
  expect(typeof parseTenantRetention('acme=0')).toBe('string');
  expect(typeof parseTenantRetention('Acme.*=7')).toBe('string');
  expect(() => loadConfig(monitoringEnv, { TELEMETRY_TENANT_RETENTION_DAYS: 'acme=seven' })).toThrow(ConfigError);
  expect(() => loadConfig(monitoringEnv, { TELEMETRY_TENANT_RETENTION_DAYS: 'acme=seven' })).toThrow(/TELEMETRY_TENANT_RETENTION_DAYS/);
  expect(loadConfig(monitoringEnv, { TELEMETRY_TENANT_RETENTION_DAYS: 'acme=7' }).TELEMETRY_TENANT_RETENTION_DAYS).toBe('acme=7');
});

test('retention drops what is older than the global limit, and a tenant’s shorter limit deletes only that tenant’s older samples', async () => {
  const store = new PostgresTelemetryStore(pool);
  const now = Date.now();
  const rows: PointRow[] = [];
  for (const tenantId of ['acme', 'beta']) {
    for (const age of [40, 10, 1]) {
      rows.push({ tenantId, deviceId: 'd1', metric: 'temp', time: new Date(now - age * DAY), messageId: `${tenantId}-${age}`, pointIndex: 0, value: { number: age } });
    }
  }
  await store.write(rows);
  await applyRetention(store, now, 30, new Map([['acme', 5]]), createLogger('test', 'silent'));
  const { rows: left } = await pool.query(`SELECT tenant_id, number_value FROM points ORDER BY tenant_id, number_value DESC`);
  expect(left.map((r) => [r.tenant_id, r.number_value])).toEqual([
    ['acme', 1],
    ['beta', 10],
    ['beta', 1],
  ]);
  const latest = await store.latest('acme', [], [], 10);
  expect(latest.map((p) => p.value.number)).toEqual([1]);
});

test('a write recreates a partition that another replica dropped', async () => {
  const store = new PostgresTelemetryStore(pool);
  const time = new Date(Date.now() - 2 * DAY);
  const row = (id: string): PointRow => ({ tenantId: 'gamma', deviceId: 'd1', metric: 'temp', time, messageId: id, pointIndex: 0, value: { number: 1 } });
  await store.write([row('a')]);
  const { rows } = await pool.query(`SELECT tableoid::regclass::text AS name FROM points WHERE tenant_id = 'gamma'`);
  await pool.query(`DROP TABLE ${rows[0].name}`);
  expect(await store.write([row('b')])).toEqual({ inserted: 1 });
  const { rows: left } = await pool.query(`SELECT message_id FROM points WHERE tenant_id = 'gamma'`);
  expect(left.map((r) => r.message_id)).toEqual(['b']);
});
