import crypto from 'node:crypto';
import fs from 'node:fs';
import { status } from '@grpc/grpc-js';
import { connect, credsAuthenticator, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { deviceService } from '@iot-mesh/device';
import { DEVICE_DIRECTORY_BUCKET, deviceDirectoryKey, deviceSubject, insecureClient, unary } from '@iot-mesh/runtime';
import { CredentialKind, CredentialServiceClient } from '../../gen/ts/iot/device/v1/credential';
import { Device, DeviceServiceClient } from '../../gen/ts/iot/device/v1/device';
import { DefaultAlertRule, DeviceType, DeviceTypeServiceClient, MetricKind, UnknownMetricPolicy } from '../../gen/ts/iot/device/v1/device_types';
import { DeviceDirectoryEntry } from '../../gen/ts/iot/device/v1/directory';
import { Alert, AlertRule, AlertServiceClient, AlertState, Comparison, Severity } from '../../gen/ts/iot/monitoring/v1/alerts';
import { OperatorNats, startOperatorNats } from '../nats-operator';
import { createTestDatabase, TestDatabase } from '../postgres';
import { startTestService, TestService } from '../services';
import { startSigningForTest, TestSigning, TestTenant } from '../signing';
import { TEST_REDIS_URL } from '../test-services';
import { createMonitoringService, MonitoringStats } from '@iot-mesh/monitoring';
import { eventually, protobufPayload } from '@iot-mesh/monitoring/test-harness';

jest.setTimeout(120_000);

/**
 * A device type's default alert rules apply to every device of that type
 * (issue 15), through the real platform: signing, the device service writing
 * the directory on an operator-mode nats-server, and monitoring evaluating
 * what devices publish with their own credentials.
 */
let signing: TestSigning;
let nats: OperatorNats;
let databases: TestDatabase[] = [];
let services: TestService<never>[] = [];
const stats: MonitoringStats[] = [];
let a: TestTenant;
let b: TestTenant;
let devices: DeviceServiceClient;
let types: DeviceTypeServiceClient;
let credentials: CredentialServiceClient;
let alerts: AlertServiceClient;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  const [deviceDb, monitoringDb] = await Promise.all([createTestDatabase('iot_dta_device'), createTestDatabase('iot_dta_monitoring')]);
  databases = [deviceDb, monitoringDb];
  [signing, nats] = await Promise.all([startSigningForTest(), startOperatorNats({ jetstream: true })]);
  const deviceSvc = await startTestService(deviceService, { DATABASE_URL: deviceDb.url, REDIS_URL: TEST_REDIS_URL, SIGNING_ADDRESS: signing.address, ...nats.deviceEnv() });
  const monitoringEnv = { DATABASE_URL: monitoringDb.url, REDIS_URL: TEST_REDIS_URL, SIGNING_ADDRESS: signing.address, WRITER_BATCH_WAIT_MS: '20', ...nats.serviceEnv() };
  // Two replicas: both see the directory and both keep the types' rules, which must still exist once each.
  const monitoringSvc = await startTestService(createMonitoringService({ onStats: (s) => stats.push(s) }), monitoringEnv);
  const replica = await startTestService(createMonitoringService({ onStats: (s) => stats.push(s) }), monitoringEnv);
  services = [deviceSvc as TestService<never>, monitoringSvc as TestService<never>, replica as TestService<never>];
  [a, b] = await Promise.all([signing.createTenant(), signing.createTenant()]);
  devices = insecureClient(DeviceServiceClient, deviceSvc.address);
  types = insecureClient(DeviceTypeServiceClient, deviceSvc.address);
  credentials = insecureClient(CredentialServiceClient, deviceSvc.address);
  alerts = insecureClient(AlertServiceClient, monitoringSvc.address);
});

afterAll(async () => {
  for (const nc of connections) await nc.close().catch(() => undefined);
  for (const client of [devices, types, credentials, alerts]) client?.close();
  for (const s of services.reverse()) await s.stop().catch(() => undefined);
  await signing?.stop();
  await nats?.stop();
  for (const db of databases) await db.drop().catch(() => undefined);
});

const operator = (t: TestTenant) => ({ authorization: t.operator.authorization });

/** A threshold default rule on `temperature`. */
function above(name: string, threshold: number): DefaultAlertRule {
  return DefaultAlertRule.fromPartial({ name, metric: 'temperature', threshold: { comparison: Comparison.COMPARISON_GREATER_THAN, threshold, hysteresis: 0 }, severity: Severity.SEVERITY_CRITICAL });
}

async function createType(t: TestTenant, name: string, defaultAlertRules: DefaultAlertRule[]): Promise<DeviceType> {
  const deviceType = DeviceType.fromPartial({ name, metrics: [{ name: 'temperature', unit: '°C', kind: MetricKind.METRIC_KIND_GAUGE }], defaultAlertRules });
  return (await unary(types, types.createDeviceType, { deviceType }, operator(t))).deviceType!;
}

/** Creates a device of the type and connects it to NATS with its own credential; returns a publisher of its temperature. */
async function device(t: TestTenant, id: string, deviceTypeId: string): Promise<(celsius: number) => Promise<void>> {
  await unary(devices, devices.createDevice, { device: Device.fromPartial({ id, name: id, deviceTypeId }) }, operator(t));
  const credential = (await unary(credentials, credentials.issueCredential, { deviceId: id, expireTime: undefined, kind: CredentialKind.CREDENTIAL_KIND_NATS }, operator(t))).credential!;
  const nc = await connect({ servers: nats.server.url, authenticator: deviceUserAuthenticator(credential), reconnect: false });
  connections.push(nc);
  return async (celsius) => {
    nc.publish(deviceSubject(t.tenantId, id, 'tel'), protobufPayload({ points: [{ metric: 'temperature', numberValue: celsius, time: new Date() }] }));
    // Once the server answers the flush it has routed the point, so points of different devices reach monitoring in the order sent.
    await nc.flush();
  };
}

/** Both replicas have evaluated everything they received. */
const alertsIdle = () => Promise.all(stats.map((s) => s.alertsIdle()));
const rulesOf = async (t: TestTenant): Promise<AlertRule[]> => (await unary(alerts, alerts.listAlertRules, {}, operator(t))).rules;
const alertsOf = async (t: TestTenant): Promise<Alert[]> => (await unary(alerts, alerts.listAlerts, { state: AlertState.ALERT_STATE_UNSPECIFIED, deviceId: '', unacknowledgedOnly: false }, operator(t))).alerts;

test("a type's default rule alerts every device of the type, follows changes of the type without a restart, and goes when the type drops it", async () => {
  const boiler = await createType(a, 'boiler', [above('too hot', 80)]);
  const fan = await createType(a, 'fan', []);
  // Another tenant's type of the same name, with a much lower threshold.
  const otherBoiler = await createType(b, 'boiler', [above('too hot', 10)]);
  const boiler1 = await device(a, 'boiler-1', boiler.id);
  const fan1 = await device(a, 'fan-1', fan.id);
  const otherBoiler1 = await device(b, 'boiler-1', otherBoiler.id);

  // Monitoring keeps the rule as the type's: one per tenant, for the tenant's own type, read-only.
  const [rule] = await eventually(async () => {
    const rules = await rulesOf(a);
    return rules.length === 1 && rules[0].deviceTypeId === boiler.id ? rules : undefined;
  }, "tenant A's boiler rule");
  expect(rule).toMatchObject({ name: 'too hot', metric: 'temperature', deviceIds: [], enabled: true, severity: Severity.SEVERITY_CRITICAL, threshold: { threshold: 80 } });
  await eventually(async () => (await rulesOf(b)).some((r) => r.deviceTypeId === otherBoiler.id), "tenant B's boiler rule");
  expect((await rulesOf(b)).map((r) => [r.deviceTypeId, r.threshold?.threshold])).toEqual([[otherBoiler.id, 10]]);

  // An entry written without its type (the device service failed to read it: no policy, no rules) leaves the type's rules alone.
  // Entries are applied in order, so once a later entry's rule is stored the earlier one has been seen.
  const platform = await connect({ servers: nats.server.url, authenticator: credsAuthenticator(fs.readFileSync(nats.serviceCredsFile)) });
  connections.push(platform);
  const bucket = await platform.jetstream().views.kv(DEVICE_DIRECTORY_BUCKET);
  const entry = (deviceId: string, deviceTypeId: string, fields: Partial<DeviceDirectoryEntry>) =>
    bucket.put(deviceDirectoryKey(a.tenantId, deviceId), DeviceDirectoryEntry.encode(DeviceDirectoryEntry.fromPartial({ tenantId: a.tenantId, deviceId, name: deviceId, deviceTypeId, ...fields })).finish());
  const probeType = crypto.randomUUID();
  const accept = UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_ACCEPT;
  await entry('boiler-9', boiler.id, { unknownMetricPolicy: UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_UNSPECIFIED, defaultAlertRules: [] });
  await entry('probe-1', probeType, { unknownMetricPolicy: accept, defaultAlertRules: [above('probe', 1000)] });
  await eventually(async () => (await rulesOf(a)).some((r) => r.deviceTypeId === probeType), 'the probe rule');
  expect((await rulesOf(a)).find((r) => r.deviceTypeId === boiler.id)?.id).toBe(rule.id);
  await entry('probe-1', probeType, { unknownMetricPolicy: accept, defaultAlertRules: [] });
  await eventually(async () => (await rulesOf(a)).length === 1, 'the probe rule removed');
  await Promise.all([bucket.delete(deviceDirectoryKey(a.tenantId, 'probe-1')), bucket.delete(deviceDirectoryKey(a.tenantId, 'boiler-9'))]);

  const update = await unary(alerts, alerts.updateAlertRule, { rule: { ...rule, threshold: { ...rule.threshold!, threshold: 1 } }, updateMask: [] }, operator(a)).catch((e) => e);
  expect([update.code, update.details]).toEqual([status.FAILED_PRECONDITION, expect.stringContaining("change the device type's default alert rules instead")]);
  expect((await unary(alerts, alerts.deleteAlertRule, { id: rule.id }, operator(a)).catch((e) => e)).code).toBe(status.FAILED_PRECONDITION);
  expect((await rulesOf(a)).map((r) => r.id)).toEqual([rule.id]);

  // The fan (another type) is not alerted at 90; the boiler is not at 50 (tenant B's threshold is B's); it is at 90.
  await fan1(90);
  await boiler1(50);
  await otherBoiler1(50);
  await boiler1(90);
  await eventually(async () => (await alertsOf(a)).length > 0, 'the boiler alert');
  await alertsIdle();
  expect((await alertsOf(a)).map((x) => [x.deviceId, x.ruleId, x.value, x.state])).toEqual([['boiler-1', rule.id, 90, AlertState.ALERT_STATE_RAISED]]);
  expect((await alertsOf(b)).map((x) => [x.deviceId, x.value])).toEqual([['boiler-1', 50]]);

  // Lowering the type's threshold to 40 changes the same rule, without a restart: 30 resolves the alert, 45 raises again.
  await unary(types, types.updateDeviceType, { deviceType: DeviceType.fromPartial({ id: boiler.id, defaultAlertRules: [above('too hot', 40)] }), updateMask: ['default_alert_rules'] }, operator(a));
  await eventually(async () => (await rulesOf(a)).find((r) => r.id === rule.id)?.threshold?.threshold === 40, 'the changed rule');
  await boiler1(30);
  await eventually(async () => (await alertsOf(a))[0]?.state === AlertState.ALERT_STATE_RESOLVED, 'the resolved alert');
  await boiler1(45);
  const raised = await eventually(async () => (await alertsOf(a)).find((x) => x.state === AlertState.ALERT_STATE_RAISED), 'an alert at 45 under the new threshold');
  expect([raised.deviceId, raised.ruleId, raised.value]).toEqual(['boiler-1', rule.id, 45]);

  // Dropping the type's default rules removes the rule (and its alerts); the boiler's next heat raises nothing.
  await unary(types, types.updateDeviceType, { deviceType: DeviceType.fromPartial({ id: boiler.id, defaultAlertRules: [] }), updateMask: ['default_alert_rules'] }, operator(a));
  await eventually(async () => (await rulesOf(a)).length === 0, 'the rule removed');
  await boiler1(99);
  await fan1(99);
  await alertsIdle();
  expect(await alertsOf(a)).toEqual([]);
  // Tenant B's type kept its rule throughout.
  expect((await rulesOf(b)).map((r) => r.id)).toHaveLength(1);
});
