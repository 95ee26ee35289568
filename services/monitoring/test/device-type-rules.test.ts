import crypto from 'node:crypto';
import { deviceDirectoryKey } from '@iot-mesh/runtime';
import { DefaultAlertRule } from '../../../gen/ts/iot/device/v1/device_types';
import { Comparison, Severity } from '../../../gen/ts/iot/monitoring/v1/alerts';
import { eventually, MonitoringWorld, newTenant, startWorld } from './harness';

jest.setTimeout(60_000);

let world: MonitoringWorld;

beforeAll(async () => {
  world = await startWorld({ LOG_LEVEL: process.env.MON_LOG ?? 'silent' });
});
afterAll(async () => {
  await world?.close();
});

const hot = (name: string): DefaultAlertRule => ({ name, metric: 'temp', threshold: { comparison: Comparison.COMPARISON_GREATER_THAN, threshold: 30, hysteresis: 0, duration: undefined }, noData: undefined, severity: Severity.SEVERITY_CRITICAL });

/** Names of the alert rules a device type owns, as the alert rule API lists them. */
async function typeRuleNames(tenantId: string, deviceTypeId: string): Promise<string[]> {
  const { rows } = await world.pool.query('SELECT name FROM alert_rules WHERE tenant_id = $1 AND device_type_id = $2 ORDER BY name', [tenantId, deviceTypeId]);
  return rows.map((r) => r.name);
}

/**
 * Waits until the directory watch has passed every change written so far: a
 * device of a fresh type is written last and its rule waited for (the watch
 * delivers in order), then the type syncs are waited out.
 */
async function directorySettled(tenantId: string): Promise<void> {
  const marker = crypto.randomUUID();
  await world.registerDevice(tenantId, `marker-${marker}`, { deviceType: { id: marker, defaultAlertRules: [hot('marker')] } });
  await eventually(async () => (await typeRuleNames(tenantId, marker)).length === 1, 'the marker type rule');
  await world.services[0].stats.alertsIdle();
}

test("a device type's default alert rules are dropped when its last device leaves the directory (as before its deletion), and replaced with its rules", async () => {
  const tenantId = newTenant();
  const type = crypto.randomUUID();
  await world.registerDevice(tenantId, 'd1', { deviceType: { id: type, defaultAlertRules: [hot('too hot'), hot('way too hot')] } });
  await world.registerDevice(tenantId, 'd2', { deviceType: { id: type, defaultAlertRules: [hot('too hot'), hot('way too hot')] } });
  await eventually(async () => (await typeRuleNames(tenantId, type)).length === 2, "the type's rules");

  // Its rules replaced (the device service rewrites every device's entry): the dropped one goes.
  for (const d of ['d1', 'd2']) await world.registerDevice(tenantId, d, { deviceType: { id: type, defaultAlertRules: [hot('too hot')] } });
  await eventually(async () => (await typeRuleNames(tenantId, type)).join() === 'too hot', 'the replaced rules');

  // One device gone, one left: the rules stay.
  await world.directory.delete(deviceDirectoryKey(tenantId, 'd1'));
  await directorySettled(tenantId);
  expect(await typeRuleNames(tenantId, type)).toEqual(['too hot']);

  // One moved to an untyped device, the last one: the type has no devices (it can be deleted now) and owns no rules.
  await world.registerDevice(tenantId, 'd2');
  await eventually(async () => (await typeRuleNames(tenantId, type)).length === 0, "the type's rules dropped");

  // A device of the type again brings them back.
  await world.registerDevice(tenantId, 'd3', { deviceType: { id: type, defaultAlertRules: [hot('too hot')] } });
  await eventually(async () => (await typeRuleNames(tenantId, type)).join() === 'too hot', 'the rules back');
});

test('a replica starting drops the rules of device types that have no device in the directory, and keeps the others', async () => {
  const tenantId = newTenant();
  const kept = crypto.randomUUID();
  await world.registerDevice(tenantId, 'k1', { deviceType: { id: kept, defaultAlertRules: [hot('kept')] } });
  await eventually(async () => (await typeRuleNames(tenantId, kept)).length === 1, 'the kept type rule');
  // Rules of a type deleted while no replica watched (or by a version that left them behind).
  const deleted = crypto.randomUUID();
  await world.pool.query(
    `INSERT INTO alert_rules (tenant_id, device_type_id, name, metric, condition, severity, enabled)
     SELECT tenant_id, $2, 'left behind', metric, condition, severity, true FROM alert_rules WHERE tenant_id = $1 AND device_type_id = $3`,
    [tenantId, deleted, kept],
  );
  expect(await typeRuleNames(tenantId, deleted)).toEqual(['left behind']);
  const replica = await world.startReplica();
  await replica.stats.alertsIdle();
  expect(await typeRuleNames(tenantId, deleted)).toEqual([]);
  expect(await typeRuleNames(tenantId, kept)).toEqual(['kept']);
});
