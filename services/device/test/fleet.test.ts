import { Metadata, status } from '@grpc/grpc-js';
import { Client } from 'pg';
import { insecureClient, metrics, rpcStatusDetails, unary } from '@iot-mesh/runtime';
import { Device, ListDevicesRequest } from '../../../gen/ts/iot/device/v1/device';
import { DeviceDirectoryEntry, GroupDirectoryEntry } from '../../../gen/ts/iot/device/v1/directory';
import { DeviceType, DeviceTypeServiceClient, MetricKind, UnknownMetricPolicy } from '../../../gen/ts/iot/device/v1/device_types';
import { Group, GroupServiceClient } from '../../../gen/ts/iot/device/v1/groups';
import { ClaimOutcome, ListProvisioningKeysResponse, ProvisioningKey, ProvisioningKeyState, ProvisioningServiceClient } from '../../../gen/ts/iot/device/v1/provisioning';
import { Comparison, Severity } from '../../../gen/ts/iot/monitoring/v1/alerts';
import { TestTenant } from '../../../testing/signing';
import { DeviceHarness, eventually, startDeviceHarness } from './harness';

jest.setTimeout(90_000);

let h: DeviceHarness;
let t: TestTenant;
let types: DeviceTypeServiceClient;
let groups: GroupServiceClient;
let provisioning: ProvisioningServiceClient;

beforeAll(async () => {
  h = await startDeviceHarness();
  t = await h.signing.createTenant();
  types = insecureClient(DeviceTypeServiceClient, h.device.address);
  groups = insecureClient(GroupServiceClient, h.device.address);
  provisioning = insecureClient(ProvisioningServiceClient, h.device.address);
});
afterAll(async () => {
  [types, groups, provisioning].forEach((c) => c?.close());
  await h?.stop();
});

const op = () => ({ authorization: t.operator.authorization });
const admin = () => ({ authorization: t.admin.authorization });
const viewer = () => ({ authorization: t.viewer.authorization });

/** What a failed call told the client: code, field violations, ErrorInfo reason. */
async function failure(promise: Promise<unknown>): Promise<{ code: number; fields: string[]; reason?: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { code: number; details: string; metadata?: Metadata };
    const { fieldViolations, reason } = rpcStatusDetails(e.metadata);
    return { code: e.code, message: e.details, fields: fieldViolations.map((v) => v.field), reason };
  }
  throw new Error('the call succeeded but was expected to fail');
}

const THERMOSTAT = DeviceType.fromPartial({
  name: 'thermostat',
  displayName: 'Thermostat',
  metrics: [
    { name: 'temperature', displayName: 'Temperature', unit: '°C', kind: MetricKind.METRIC_KIND_GAUGE, min: -40, max: 85 },
    { name: 'energy', unit: 'kWh', kind: MetricKind.METRIC_KIND_COUNTER },
  ],
  commands: [
    {
      name: 'set-point',
      parametersSchema: { type: 'object', properties: { celsius: { type: 'number', minimum: 5, maximum: 30 } }, required: ['celsius'], additionalProperties: false },
    },
    { name: 'reboot' },
  ],
  desiredSchema: { type: 'object', properties: { mode: { enum: ['heat', 'cool', 'off'] }, schedule: { type: 'array', items: { type: 'integer' } } }, additionalProperties: false },
  reportedSchema: { type: 'object', properties: { fw: { type: 'string' } }, required: ['fw'] },
  defaultAlertRules: [{ name: 'too hot', metric: 'temperature', threshold: { comparison: Comparison.COMPARISON_GREATER_THAN, threshold: 60, hysteresis: 2 }, severity: Severity.SEVERITY_CRITICAL }],
  firmwareVersion: '2.4.1',
  unknownMetricPolicy: UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_DEAD_LETTER,
});

let thermostat: DeviceType;

test('a device type is stored with its metrics, schemas, alert rules and firmware; bad definitions are refused field by field', async () => {
  thermostat = (await unary(types, types.createDeviceType, { deviceType: THERMOSTAT }, op())).deviceType!;
  expect(thermostat.id).toMatch(/^[0-9a-f-]{36}$/);
  const fetched = (await unary(types, types.getDeviceType, { id: 'thermostat' }, viewer())).deviceType!;
  expect(fetched).toEqual(thermostat);
  expect(fetched.metrics[0]).toEqual({ name: 'temperature', displayName: 'Temperature', unit: '°C', kind: MetricKind.METRIC_KIND_GAUGE, min: -40, max: 85 });
  expect(fetched.defaultAlertRules[0].threshold?.threshold).toBe(60);
  expect(fetched.firmwareVersion).toBe('2.4.1');

  const bad = await failure(
    unary(
      types,
      types.createDeviceType,
      {
        deviceType: DeviceType.fromPartial({
          name: 'Bad Name',
          metrics: [{ name: 'a', min: 5, max: 1 }, { name: 'a' }],
          desiredSchema: { type: 'object', properties: { x: { type: 'no-such-type' } } },
          commands: [{ name: 'go', parametersSchema: { minimum: 'ten' } }],
          defaultAlertRules: [{ name: 'r', metric: 'missing' }, { name: '', metric: 'a', noData: { timeout: { seconds: 60, nanos: 0 } } }, { name: 'r', metric: 'a', noData: { timeout: { seconds: 60, nanos: 0 } } }],
        }),
      },
      op(),
    ),
  );
  expect(bad.code).toBe(status.INVALID_ARGUMENT);
  expect(bad.fields).toEqual(
    expect.arrayContaining([
      'device_type.name',
      'device_type.metrics[0].max',
      'device_type.metrics[1].name',
      'device_type.commands[0].parameters_schema',
      'device_type.desired_schema',
      'device_type.default_alert_rules[0].metric',
      'device_type.default_alert_rules[0].condition',
      'device_type.default_alert_rules[1].name',
      'device_type.default_alert_rules[2].name',
    ]),
  );
  expect((await failure(unary(types, types.createDeviceType, { deviceType: THERMOSTAT }, op()))).code).toBe(status.ALREADY_EXISTS);

  // A default alert rule's condition is checked as monitoring checks an alert rule's, at create and at update.
  const rule = (fields: object) => ({ name: 'r', metric: 'temperature', severity: Severity.SEVERITY_WARNING, ...fields });
  const badRules = [
    rule({ threshold: { comparison: 99 as Comparison, threshold: 1, hysteresis: 0 } }),
    rule({ threshold: { comparison: Comparison.COMPARISON_GREATER_THAN, threshold: 1, hysteresis: -1, duration: { seconds: 8 * 86_400, nanos: 0 } } }),
    rule({ noData: { timeout: { seconds: 0, nanos: 500_000_000 } } }),
    rule({ noData: { timeout: { seconds: 60, nanos: 0 } }, severity: 42 as Severity }),
  ].map((r, i) => ({ ...r, name: `r${i}` }));
  const badConditions = await failure(unary(types, types.createDeviceType, { deviceType: DeviceType.fromPartial({ ...THERMOSTAT, name: 'bad-rules', defaultAlertRules: badRules }) }, op()));
  expect([badConditions.code, badConditions.fields.sort()]).toEqual([
    status.INVALID_ARGUMENT,
    [
      'device_type.default_alert_rules[0].threshold.comparison',
      'device_type.default_alert_rules[1].threshold.duration',
      'device_type.default_alert_rules[1].threshold.hysteresis',
      'device_type.default_alert_rules[2].no_data.timeout',
      'device_type.default_alert_rules[3].severity',
    ],
  ]);
  const badUpdate = await failure(
    unary(types, types.updateDeviceType, { deviceType: DeviceType.fromPartial({ id: thermostat.id, defaultAlertRules: [badRules[2]] }), updateMask: ['default_alert_rules'] }, op()),
  );
  expect([badUpdate.code, badUpdate.fields]).toEqual([status.INVALID_ARGUMENT, ['device_type.default_alert_rules[0].no_data.timeout']]);
  expect((await unary(types, types.getDeviceType, { id: thermostat.id }, viewer())).deviceType).toEqual(thermostat);
  expect((await failure(unary(types, types.createDeviceType, { deviceType: DeviceType.fromPartial({ name: 'x' }) }, viewer()))).code).toBe(status.PERMISSION_DENIED);
});

test('a device gets its type by id or name; free-text types keep working; the directory entry carries the type policy', async () => {
  const byName = (await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id: 'th-1', name: 'Hall', type: 'thermostat' }) }, op())).device!;
  expect(byName.deviceTypeId).toBe(thermostat.id);
  const byId = (await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id: 'th-2', name: 'Attic', deviceTypeId: thermostat.id }) }, op())).device!;
  expect([byId.deviceTypeId, byId.type]).toEqual([thermostat.id, 'thermostat']);
  const free = (await unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id: 'free-1', name: 'Old', type: 'weather-station' }) }, op())).device!;
  expect([free.deviceTypeId, free.type]).toEqual(['', 'weather-station']);
  const unknown = await failure(unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id: 'x-1', name: 'X', deviceTypeId: 'nope' }) }, op()));
  expect([unknown.code, unknown.fields]).toEqual([status.INVALID_ARGUMENT, ['device.device_type_id']]);

  const listed = await unary(h.clients.devices, h.clients.devices.listDevices, ListDevicesRequest.fromPartial({ deviceTypeId: thermostat.id }), viewer());
  expect(listed.devices.map((d) => d.id).sort()).toEqual(['th-1', 'th-2']);

  const kv = await h.platform.jetstream().views.kv('IOT_DEVICES');
  const entry = await eventually('the directory entry', async () => {
    const e = await kv.get(`${t.tenantId}.th-1`);
    return e ? DeviceDirectoryEntry.decode(e.value) : undefined;
  });
  expect([entry.deviceTypeId, entry.unknownMetricPolicy, entry.metrics]).toEqual([thermostat.id, UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_DEAD_LETTER, ['temperature', 'energy']]);
  // The type's default alert rules travel with the entry, for monitoring to apply.
  expect(entry.defaultAlertRules).toEqual(thermostat.defaultAlertRules);
  expect(entry.defaultAlertRules[0]).toMatchObject({ name: 'too hot', metric: 'temperature', threshold: { threshold: 60 } });

  // A changed type rewrites its devices' entries.
  await unary(types, types.updateDeviceType, { deviceType: DeviceType.fromPartial({ id: thermostat.id, unknownMetricPolicy: UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_ACCEPT }), updateMask: ['unknown_metric_policy'] }, op());
  await eventually('the rewritten entry', async () => {
    const e = await kv.get(`${t.tenantId}.th-2`);
    return e && DeviceDirectoryEntry.decode(e.value).unknownMetricPolicy === UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_ACCEPT;
  });
  const updated = (await unary(types, types.getDeviceType, { id: thermostat.id }, viewer())).deviceType!;
  expect([updated.unknownMetricPolicy, updated.metrics.length, updated.firmwareVersion]).toEqual([UnknownMetricPolicy.UNKNOWN_METRIC_POLICY_ACCEPT, 2, '2.4.1']);

  expect((await failure(unary(types, types.deleteDeviceType, { id: thermostat.id }, op()))).code).toBe(status.FAILED_PRECONDITION);

  // UpdateDevice binds a type (by name) and unbinds it with an empty id in the mask; the free-text type stays.
  const update = (deviceTypeId: string) =>
    unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'free-1', deviceTypeId }), updateMask: ['device_type_id'] }, op()).then((r) => r.device!);
  expect(await update('thermostat')).toMatchObject({ deviceTypeId: thermostat.id, type: 'thermostat' });
  expect(await update('')).toMatchObject({ deviceTypeId: '', type: 'thermostat' });
  await unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'free-1', type: 'weather-station' }), updateMask: ['type'] }, op());
  const missing = await failure(update('no-such-type'));
  expect([missing.code, missing.fields]).toEqual([status.INVALID_ARGUMENT, ['device.device_type_id']]);
});

test('UpdateDesired and SendCommand are validated against the type: INVALID_ARGUMENT with field violations', async () => {
  const desired = (doc: Record<string, unknown>) => unary(h.clients.twin, h.clients.twin.updateDesired, { deviceId: 'th-1', desired: doc, expectedVersion: 0n }, op());
  const wrong = await failure(desired({ mode: 'turbo', schedule: [1, 'x'], extra: true }));
  expect(wrong.code).toBe(status.INVALID_ARGUMENT);
  expect(wrong.fields.sort()).toEqual(['desired.extra', 'desired.mode', 'desired.schedule[1]']);
  expect((await desired({ mode: 'heat', schedule: [6, 22] })).twin!.desired).toEqual({ mode: 'heat', schedule: [6, 22] });
  // Untyped devices take any document.
  expect((await unary(h.clients.twin, h.clients.twin.updateDesired, { deviceId: 'free-1', desired: { anything: 1 }, expectedVersion: 0n }, op())).twin!.desiredVersion).toBe(1n);

  const send = (deviceId: string, name: string, payload?: Record<string, unknown>) =>
    unary(h.clients.commands, h.clients.commands.sendCommand, { deviceId, name, payload, timeout: undefined }, op());
  const unknownCommand = await failure(send('th-1', 'self-destruct'));
  expect([unknownCommand.code, unknownCommand.fields]).toEqual([status.INVALID_ARGUMENT, ['name']]);
  const badPayload = await failure(send('th-1', 'set-point', { celsius: 99, fan: 'on' }));
  expect([badPayload.code, badPayload.fields.sort()]).toEqual([status.INVALID_ARGUMENT, ['payload.celsius', 'payload.fan']]);
  const missing = await failure(send('th-1', 'set-point', {}));
  expect(missing.fields).toEqual(['payload.celsius']);
  // A valid command gets past validation to delivery: the device is offline.
  expect((await failure(send('th-1', 'set-point', { celsius: 21 }))).code).toBe(status.FAILED_PRECONDITION);
  expect((await failure(send('free-1', 'whatever', { x: 1 }))).code).toBe(status.FAILED_PRECONDITION);
});

test('a reported state that fails the type schema is not stored', async () => {
  const subject = (id: string) => `iot.${t.tenantId}.dev.${id}.state`;
  h.platform.publish(subject('th-2'), JSON.stringify({ reported: { fw: 7 } }));
  h.platform.publish(subject('th-2'), JSON.stringify({ reported: { fw: '2.4.1' } }));
  const twin = await eventually('the valid report', async () => {
    const tw = (await unary(h.clients.twin, h.clients.twin.getTwin, { deviceId: 'th-2' }, viewer())).twin!;
    return tw.reportedVersion > 0n ? tw : undefined;
  });
  // Reports of one subject arrive in order: the invalid one came first and was dropped.
  expect([twin.reportedVersion, twin.reported]).toEqual([1n, { fw: '2.4.1' }]);
});

describe('self-provisioning', () => {
  let key: ProvisioningKey;
  let secret: string;
  const claim = (serialNumber: string, provisioningKey = secret, name = '') => unary(provisioning, provisioning.claimDevice, { provisioningKey, serialNumber, name }, {});

  beforeAll(async () => {
    const created = await unary(
      provisioning,
      provisioning.createProvisioningKey,
      { provisioningKey: ProvisioningKey.fromPartial({ name: 'factory line 1', deviceTypeId: 'thermostat', labels: { site: 'plant-7' }, usageLimit: 12n }) },
      admin(),
    );
    key = created.provisioningKey!;
    secret = created.secret;
  });

  test('a key is shown once, stored only as a hash, and listed without its secret', async () => {
    expect(secret).toMatch(/^iotpk_[A-Za-z0-9_-]{43}$/);
    expect([key.deviceTypeId, key.labels, key.usageLimit, key.state]).toEqual([thermostat.id, { site: 'plant-7' }, 12n, ProvisioningKeyState.PROVISIONING_KEY_STATE_ACTIVE]);
    expect(secret.startsWith(key.secretPrefix)).toBe(true);
    const listed = await unary(provisioning, provisioning.listProvisioningKeys, {}, viewer());
    expect(listed.provisioningKeys.map((k) => k.id)).toContain(key.id);
    expect(JSON.stringify(ListProvisioningKeysResponse.toJSON(listed))).not.toContain(secret);
    const db = new Client({ connectionString: h.db.url });
    await db.connect();
    try {
      const { rows } = await db.query('SELECT row_to_json(k)::text AS row FROM device.provisioning_keys k WHERE id = $1', [key.id]);
      expect(rows).toHaveLength(1);
      expect(rows[0].row).not.toContain(secret.slice(6));
    } finally {
      await db.end();
    }
    // Operators may not mint keys: a key is a way into the tenant.
    expect((await failure(unary(provisioning, provisioning.createProvisioningKey, { provisioningKey: ProvisioningKey.fromPartial({ name: 'x' }) }, op()))).code).toBe(status.PERMISSION_DENIED);
  });

  test('a claim creates a typed, labelled device with its own credential; the same serial again is the same device with a fresh credential', async () => {
    const first = await claim('SN-0001', secret, 'Kitchen');
    expect(first.outcome).toBe(ClaimOutcome.CLAIM_OUTCOME_CREATED);
    expect(first.device).toMatchObject({ tenantId: t.tenantId, name: 'Kitchen', type: 'thermostat', deviceTypeId: thermostat.id, serialNumber: 'SN-0001', labels: { site: 'plant-7' } });
    expect(first.credential!.deviceId).toBe(first.device!.id);
    expect(first.credential!.token.length).toBeGreaterThan(100);

    const again = await claim('SN-0001');
    expect(again.outcome).toBe(ClaimOutcome.CLAIM_OUTCOME_RECLAIMED);
    expect(again.device!.id).toBe(first.device!.id);
    expect(again.device!.name).toBe('Kitchen');
    expect(again.credential!.publicKey).not.toBe(first.credential!.publicKey);

    const k = (await unary(provisioning, provisioning.listProvisioningKeys, {}, viewer())).provisioningKeys.find((x) => x.id === key.id)!;
    expect([k.deviceCount, k.claimCount]).toEqual([1n, 2n]);
    const claims = (await unary(provisioning, provisioning.listClaims, { keyId: key.id }, viewer())).claims;
    expect(claims.map((c) => [c.serialNumber, c.outcome, c.deviceId])).toEqual([
      ['SN-0001', ClaimOutcome.CLAIM_OUTCOME_RECLAIMED, first.device!.id],
      ['SN-0001', ClaimOutcome.CLAIM_OUTCOME_CREATED, first.device!.id],
    ]);
  });

  test('concurrent claims of one serial make one device, with one key or with two', async () => {
    const other = (await unary(provisioning, provisioning.createProvisioningKey, { provisioningKey: ProvisioningKey.fromPartial({ name: 'line 2', labels: { site: 'plant-7' } }) }, admin())).secret;
    // Claims of one key queue on the key's row; claims of two keys meet at the unique serial index.
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => claim('SN-RACE', i % 2 === 0 ? secret : other)));
    expect(new Set(results.map((r) => r.device!.id)).size).toBe(1);
    expect(results.filter((r) => r.outcome === ClaimOutcome.CLAIM_OUTCOME_CREATED)).toHaveLength(1);
    const listed = await unary(h.clients.devices, h.clients.devices.listDevices, { labels: { site: 'plant-7' }, status: 0, namePrefix: 'SN-RACE', type: '', groupId: '', deviceTypeId: '', orderBy: '' }, viewer());
    expect(listed.devices).toHaveLength(1);
  });

  test('unknown, revoked, expired and exhausted keys are refused with their own codes and reasons, audited and counted', async () => {
    const OUTCOMES = ['created', 'reclaimed', 'refused_unknown', 'refused_revoked', 'refused_expired', 'refused_exhausted', 'invalid'];
    const counts = async () => {
      const values = (await metrics.registry.getSingleMetric('iot_device_provisioning_claims_total')!.get()).values;
      return Object.fromEntries(OUTCOMES.map((o) => [o, values.find((v) => v.labels.outcome === o)?.value ?? 0]));
    };
    const before = await counts();
    const unknown = await failure(claim('SN-X', 'iotpk_not-a-key'));
    expect([unknown.code, unknown.reason]).toEqual([status.PERMISSION_DENIED, 'PROVISIONING_KEY_UNKNOWN']);
    const bad = await failure(claim(' spaced ', secret));
    expect([bad.code, bad.fields]).toEqual([status.INVALID_ARGUMENT, ['serial_number']]);

    const small = await unary(provisioning, provisioning.createProvisioningKey, { provisioningKey: ProvisioningKey.fromPartial({ name: 'one', usageLimit: 1n }) }, admin());
    await claim('SN-ONE', small.secret);
    const exhausted = await failure(claim('SN-TWO', small.secret));
    expect([exhausted.code, exhausted.reason]).toEqual([status.FAILED_PRECONDITION, 'PROVISIONING_KEY_EXHAUSTED']);
    // The device it did create may still recover its credential.
    expect((await claim('SN-ONE', small.secret)).outcome).toBe(ClaimOutcome.CLAIM_OUTCOME_RECLAIMED);

    const expiring = await unary(
      provisioning,
      provisioning.createProvisioningKey,
      { provisioningKey: ProvisioningKey.fromPartial({ name: 'soon', expireTime: new Date(Date.now() + 3_600_000) }) },
      admin(),
    );
    const db = new Client({ connectionString: h.db.url });
    await db.connect();
    try {
      await db.query(`UPDATE device.provisioning_keys SET expire_time = now() - interval '1 second' WHERE id = $1`, [expiring.provisioningKey!.id]);
    } finally {
      await db.end();
    }
    const expired = await failure(claim('SN-E', expiring.secret));
    expect([expired.code, expired.reason]).toEqual([status.FAILED_PRECONDITION, 'PROVISIONING_KEY_EXPIRED']);

    await unary(provisioning, provisioning.revokeProvisioningKey, { id: small.provisioningKey!.id }, admin());
    const revoked = await failure(claim('SN-ONE', small.secret));
    expect([revoked.code, revoked.reason]).toEqual([status.PERMISSION_DENIED, 'PROVISIONING_KEY_REVOKED']);

    const keys = (await unary(provisioning, provisioning.listProvisioningKeys, {}, viewer())).provisioningKeys;
    expect(keys.find((k) => k.id === small.provisioningKey!.id)!.state).toBe(ProvisioningKeyState.PROVISIONING_KEY_STATE_REVOKED);
    expect(keys.find((k) => k.id === expiring.provisioningKey!.id)!.state).toBe(ProvisioningKeyState.PROVISIONING_KEY_STATE_EXPIRED);
    const audit = (await unary(provisioning, provisioning.listClaims, { keyId: small.provisioningKey!.id }, viewer())).claims.map((c) => [c.serialNumber, c.outcome]);
    expect(audit).toEqual([
      ['SN-ONE', ClaimOutcome.CLAIM_OUTCOME_REFUSED_REVOKED],
      ['SN-ONE', ClaimOutcome.CLAIM_OUTCOME_RECLAIMED],
      ['SN-TWO', ClaimOutcome.CLAIM_OUTCOME_REFUSED_EXHAUSTED],
      ['SN-ONE', ClaimOutcome.CLAIM_OUTCOME_CREATED],
    ]);
    const after = await counts();
    expect(Object.fromEntries(OUTCOMES.map((o) => [o, after[o] - before[o]]))).toEqual({
      created: 1,
      reclaimed: 1,
      refused_unknown: 1,
      refused_revoked: 1,
      refused_expired: 1,
      refused_exhausted: 1,
      invalid: 1,
    });
  });
});

test('a group is a saved selector: its devices follow their labels; ListDevices takes a group id', async () => {
  const mk = (id: string, labels: Record<string, string>) => unary(h.clients.devices, h.clients.devices.createDevice, { device: Device.fromPartial({ id, name: id, labels }) }, op());
  await mk('g-1', { floor: '2', zone: 'a' });
  await mk('g-2', { floor: '2', zone: 'b' });
  await mk('g-3', { floor: '3', zone: 'a' });
  const group = (await unary(groups, groups.createGroup, { group: Group.fromPartial({ name: 'second floor', selector: { matchLabels: { floor: '2' } } }) }, op())).group!;
  const members = async () => (await unary(groups, groups.listGroupDevices, { id: group.id }, viewer())).devices.map((d) => d.id).sort();
  expect(await members()).toEqual(['g-1', 'g-2']);
  // The group directory monitoring watches carries the selector, rewritten and removed with the group.
  const groupKv = await h.platform.jetstream().views.kv('IOT_GROUPS');
  const groupEntry = async () => {
    const e = await groupKv.get(`${t.tenantId}.${group.id}`);
    return e && e.operation === 'PUT' ? GroupDirectoryEntry.decode(e.value) : undefined;
  };
  expect(await groupEntry()).toEqual({ tenantId: t.tenantId, groupId: group.id, matchLabels: { floor: '2' }, deviceTypeId: '' });
  const narrowed = await unary(h.clients.devices, h.clients.devices.listDevices, { labels: { zone: 'b' }, status: 0, namePrefix: '', type: '', groupId: group.id, deviceTypeId: '', orderBy: '' }, viewer());
  expect(narrowed.devices.map((d) => d.id)).toEqual(['g-2']);
  const contradicting = await unary(h.clients.devices, h.clients.devices.listDevices, { labels: { floor: '3' }, status: 0, namePrefix: '', type: '', groupId: group.id, deviceTypeId: '', orderBy: '' }, viewer());
  expect(contradicting.devices).toEqual([]);

  await unary(h.clients.devices, h.clients.devices.updateDevice, { device: Device.fromPartial({ id: 'g-3', labels: { floor: '2', zone: 'a' } }), updateMask: ['labels'] }, op());
  expect(await members()).toEqual(['g-1', 'g-2', 'g-3']);

  const typed = (
    await unary(groups, groups.updateGroup, { group: Group.fromPartial({ id: group.id, selector: { matchLabels: {}, deviceTypeId: 'thermostat' } }), updateMask: ['selector'] }, op())
  ).group!;
  expect([typed.name, typed.selector]).toEqual(['second floor', { matchLabels: {}, deviceTypeId: thermostat.id }]);
  expect((await members()).filter((id) => id.startsWith('th-'))).toEqual(['th-1', 'th-2']);
  expect(await groupEntry()).toEqual({ tenantId: t.tenantId, groupId: group.id, matchLabels: {}, deviceTypeId: thermostat.id });

  expect((await failure(unary(groups, groups.createGroup, { group: Group.fromPartial({ name: 'second floor' }) }, op()))).code).toBe(status.ALREADY_EXISTS);
  expect((await unary(groups, groups.listGroups, {}, viewer())).groups.map((g) => g.name)).toEqual(['second floor']);
  await unary(groups, groups.deleteGroup, { id: group.id }, op());
  expect(await groupEntry()).toBeUndefined();
  expect((await failure(unary(groups, groups.getGroup, { id: group.id }, viewer()))).code).toBe(status.NOT_FOUND);
  expect((await failure(unary(h.clients.devices, h.clients.devices.listDevices, { labels: {}, status: 0, namePrefix: '', type: '', groupId: group.id, deviceTypeId: '', orderBy: '' }, viewer()))).code).toBe(
    status.NOT_FOUND,
  );
});
