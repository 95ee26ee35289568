import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { eventually, jsonPayload } from '@iot-mesh/monitoring/test-harness';
import { iotctlSession } from './iotctl-process';

jest.setTimeout(60_000);

/*
 * iotctl's fleet commands (device types, groups, provisioning keys and the
 * device-side claim) as a real process against the mesh on real servers.
 */
describe('iotctl fleet commands', () => {
  const session = iotctlSession('fleet', 'admin');
  const { ok } = session;
  let dir: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotctl-fleet-files-'));
  });

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates a device type from proto3 JSON and lists its metrics with units', async () => {
    const file = path.join(dir, 'meter.json');
    fs.writeFileSync(file, JSON.stringify({ name: 'meter', metrics: [{ name: 'power', unit: 'W', kind: 'METRIC_KIND_GAUGE', min: 0 }], firmwareVersion: '3.1' }));
    const created = JSON.parse(await ok(['device-types', 'create', '--file', file, '-o', 'json']));
    expect(created).toMatchObject({ name: 'meter', firmwareVersion: '3.1', metrics: [{ name: 'power', unit: 'W', kind: 'METRIC_KIND_GAUGE', min: 0 }] });
    const table = await ok(['device-types', 'list']);
    expect(table).toMatch(/meter +power \[W\] gauge 0\.\. +3\.1/);
  });

  it('a device claims itself with a provisioning key; the key lists its use and claims; the group of its devices charts their history', async () => {
    const { mesh, tenant } = session;
    const key = JSON.parse(await ok(['provisioning', 'keys', 'create', '--name', 'line 1', '--device-type', 'meter', '--label', 'site=north', '--usage-limit', '5', '-o', 'json']));
    expect(key.secret).toMatch(/^iotpk_/);
    const claimed = JSON.parse(await ok(['provisioning', 'claim', '--key', key.secret, '--serial', 'M-42', '-o', 'json']));
    expect(claimed.outcome).toBe('CLAIM_OUTCOME_CREATED');
    expect(claimed.device).toMatchObject({ name: 'M-42', type: 'meter', serialNumber: 'M-42', labels: { site: 'north' } });
    expect(claimed.credential.token).toMatch(/^eyJ/);
    const keys = JSON.parse(await ok(['provisioning', 'keys', 'list', '-o', 'json']));
    expect(keys[0]).toMatchObject({ name: 'line 1', deviceCount: '1', claimCount: '1', usageLimit: '5', state: 'PROVISIONING_KEY_STATE_ACTIVE' });
    const claims = JSON.parse(await ok(['provisioning', 'keys', 'claims', '--key', key.provisioningKey.id, '-o', 'json']));
    expect(claims.map((c: { serialNumber: string; outcome: string }) => [c.serialNumber, c.outcome])).toEqual([['M-42', 'CLAIM_OUTCOME_CREATED']]);

    const group = JSON.parse(await ok(['groups', 'create', '--name', 'north meters', '--label', 'site=north', '--device-type', 'meter', '-o', 'json']));
    const members = JSON.parse(await ok(['groups', 'devices', '--group', group.id, '-o', 'json']));
    expect(members.map((d: { serialNumber: string }) => d.serialNumber)).toEqual(['M-42']);
    const listed = JSON.parse(await ok(['devices', 'list', '--group', group.id, '-o', 'json']));
    expect(listed).toEqual(members);

    // The group's history: one metric across its members, per bucket (QueryGroupHistory).
    const start = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
    const deviceId = claimed.device.id;
    // The mesh's monitoring has a NATS of its own: its device and group directories are written here as the device service would.
    await mesh.monitoring.registerDevice(tenant.tenantId, deviceId, { labels: { site: 'north' }, type: 'meter' });
    await mesh.monitoring.putGroup(tenant.tenantId, group.id, { site: 'north' });
    await mesh.monitoring.publish(tenant.tenantId, deviceId, jsonPayload({ messageId: 'fleet-seed', points: [0, 1, 2].map((i) => ({ metric: 'power', time: new Date(start + i * 60_000).toISOString(), numberValue: 10 + i })) }));
    await eventually(async () => (await mesh.monitoring.rowCount(tenant.tenantId)) >= 3, 'stored points');
    const history = await eventually(
      () => ok(['telemetry', 'history', '--group', group.id, '--metric', 'power', '--from', '1h', '--bucket', '1m', '--per-device', '-o', 'csv']).catch(() => undefined),
      'the group known to monitoring',
    );
    const rows = parseCsv(history, { columns: true }) as Record<string, string>[];
    expect(rows.map((r) => [r.DEVICE, r.START, r.AVG, r.COUNT, r.DEVICES])).toEqual([
      ...[0, 1, 2].map((i) => ['(group)', new Date(start + i * 60_000).toISOString(), String(10 + i), '1', '1']),
      ...[0, 1, 2].map((i) => [deviceId, new Date(start + i * 60_000).toISOString(), String(10 + i), '1', '1']),
    ]);
  });
});
