import { status } from '@grpc/grpc-js';
import { RetentionServiceClient } from '../../../gen/ts/iot/monitoring/v1/retention';
import { unary } from '@iot-mesh/runtime';
import { TestTenant } from '../../../testing/signing';
import { PostgresTelemetryStore } from '../src/store/postgres-store';
import type { PointRow } from '../src/store/telemetry-store';
import { MonitoringWorld, SignedWorld, startSignedWorld } from './harness';

jest.setTimeout(60_000);

const DAY = 86_400_000;
let signed: SignedWorld;
let world: MonitoringWorld;
let a: TestTenant;
let retention: RetentionServiceClient;

beforeAll(async () => {
  ({ world, a } = signed = await startSignedWorld());
  retention = signed.client(RetentionServiceClient);
  await world.registerDevice(a.tenantId, 'meter-1', { type: 'meter' });
  await world.registerDevice(a.tenantId, 'sensor-1', { type: 'sensor' });
});
afterAll(() => signed?.close());

/** The retention job, driven with a chosen clock (the service runs the same round hourly). */
const runRetention = (now: number) => world.services[0].stats.retention(now);

async function pointTimes(deviceId: string): Promise<number[]> {
  const { rows } = await world.pool.query('SELECT time FROM points WHERE tenant_id = $1 AND device_id = $2 ORDER BY time', [a.tenantId, deviceId]);
  return rows.map((r) => r.time.getTime());
}

async function oldestRollup(deviceId: string): Promise<number | undefined> {
  const { rows } = await world.pool.query('SELECT min(bucket) AS b FROM rollups WHERE tenant_id = $1 AND device_id = $2', [a.tenantId, deviceId]);
  return rows[0].b?.getTime();
}

test('retention per tenant and per device type, raw and rollups apart: each is deleted when the policy says and not a millisecond before', async () => {
  const admin = { authorization: a.admin.authorization };
  const viewer = { authorization: a.viewer.authorization };
  const now = Date.now();
  const rows: PointRow[] = [];
  for (const [deviceId, ages] of [['meter-1', [2.5, 1]], ['sensor-1', [9, 5, 1]]] as const) {
    for (const age of ages) rows.push({ tenantId: a.tenantId, deviceId, metric: 'v', time: new Date(now - age * DAY), messageId: `${deviceId}-${age}`, pointIndex: 0, value: { number: age } });
  }
  await new PostgresTelemetryStore(world.pool).write(rows);

  // Before any policy: the deployment's limits (30 days raw, 400 rollups), dropped with the oldest day partition.
  const initial = (await unary(retention, retention.getRetentionPolicy, { deviceType: '' }, viewer)).policy!;
  expect(initial).toMatchObject({ rawDays: 0, rollupDays: 0, effectiveRawDays: 30, effectiveRollupDays: 400 });
  expect(initial.nextRawDropTime!.getTime()).toBe(Math.floor((now - 9 * DAY) / DAY) * DAY + DAY + 30 * DAY);

  await expect(unary(retention, retention.setRetentionPolicy, { policy: { tenantId: '', deviceType: '', rawDays: 10, rollupDays: 15, effectiveRawDays: 0, effectiveRollupDays: 0 } }, viewer)).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
  await expect(unary(retention, retention.setRetentionPolicy, { policy: { tenantId: '', deviceType: 'Bad Type', rawDays: -1, rollupDays: 0, effectiveRawDays: 0, effectiveRollupDays: 0 } }, admin)).rejects.toMatchObject({
    code: status.INVALID_ARGUMENT,
    details: expect.stringMatching(/policy.device_type.*policy.raw_days/s),
  });
  const tenantPolicy = (await unary(retention, retention.setRetentionPolicy, { policy: { tenantId: '', deviceType: '', rawDays: 10, rollupDays: 15, effectiveRawDays: 0, effectiveRollupDays: 0 } }, admin)).policy!;
  const meterPolicy = (await unary(retention, retention.setRetentionPolicy, { policy: { tenantId: '', deviceType: 'meter', rawDays: 3, rollupDays: 0, effectiveRawDays: 0, effectiveRollupDays: 0 } }, admin)).policy!;
  expect(tenantPolicy).toMatchObject({ tenantId: a.tenantId, deviceType: '', effectiveRawDays: 10, effectiveRollupDays: 15 });
  // The meter type keeps raw points 3 days and inherits the tenant's 15 days of rollups.
  expect(meterPolicy).toMatchObject({ deviceType: 'meter', rawDays: 3, rollupDays: 0, effectiveRawDays: 3, effectiveRollupDays: 15 });
  const listed = (await unary(retention, retention.listRetentionPolicies, {}, viewer)).policies;
  expect(listed.map((p) => [p.deviceType, p.effectiveRawDays, p.effectiveRollupDays])).toEqual([['', 10, 15], ['meter', 3, 15]]);

  // The meter's oldest point (2.5 days old) is due half a day from now; the sensor's (9 days, the tenant's 10) in a day.
  const meterDue = meterPolicy.nextRawDropTime!.getTime();
  const sensorDue = tenantPolicy.nextRawDropTime!.getTime();
  expect(meterDue).toBe(now - 2.5 * DAY + 3 * DAY + 1);
  expect(sensorDue).toBe(now - 9 * DAY + 10 * DAY + 1);

  await runRetention(meterDue - 1);
  expect(await pointTimes('meter-1')).toHaveLength(2);
  await runRetention(meterDue);
  expect(await pointTimes('meter-1')).toEqual([now - DAY]);
  // The tenant's shorter default did not touch the sensor yet, nor the meter's policy the sensor.
  expect(await pointTimes('sensor-1')).toHaveLength(3);
  await runRetention(sensorDue - 1);
  expect(await pointTimes('sensor-1')).toHaveLength(3);
  await runRetention(sensorDue);
  expect(await pointTimes('sensor-1')).toEqual([now - 5 * DAY, now - DAY]);

  // Rollups follow their own limit: the sensor's oldest (day) bucket goes 15 days after it starts, its raw points long gone.
  const rollupDue = (await unary(retention, retention.getRetentionPolicy, { deviceType: '' }, viewer)).policy!.nextRollupDropTime!.getTime();
  const oldest = (await oldestRollup('sensor-1'))!;
  expect(rollupDue).toBe(oldest + 15 * DAY + 1);
  await runRetention(rollupDue - 1);
  expect(await oldestRollup('sensor-1')).toBe(oldest);
  await runRetention(rollupDue);
  expect(await oldestRollup('sensor-1')).toBeGreaterThan(oldest);

  // 0 and 0 removes a policy: the type inherits the tenant's days again.
  const cleared = (await unary(retention, retention.setRetentionPolicy, { policy: { tenantId: '', deviceType: 'meter', rawDays: 0, rollupDays: 0, effectiveRawDays: 0, effectiveRollupDays: 0 } }, admin)).policy!;
  expect(cleared).toMatchObject({ rawDays: 0, effectiveRawDays: 10 });
  // Another tenant sees none of it.
  const b = await signed.signing.createTenant();
  expect((await unary(retention, retention.listRetentionPolicies, {}, { authorization: b.viewer.authorization })).policies.map((p) => p.effectiveRawDays)).toEqual([30]);
});

test('the delivery log is kept RULES_DELIVERY_RETENTION_DAYS (30) days', async () => {
  const insert = (ageDays: number) =>
    world.pool.query(
      `INSERT INTO rule_deliveries (tenant_id, rule_id, action_kind, device_id, message_id, state, attempts, create_time)
       VALUES ($1, gen_random_uuid(), 'webhook', 'd1', $2, 1, 1, now() - $3 * interval '1 day')`,
      [a.tenantId, `age-${ageDays}`, ageDays],
    );
  await insert(31);
  await insert(29);
  await runRetention(Date.now());
  const { rows } = await world.pool.query('SELECT message_id FROM rule_deliveries WHERE tenant_id = $1', [a.tenantId]);
  expect(rows.map((r) => r.message_id)).toEqual(['age-29']);
});
