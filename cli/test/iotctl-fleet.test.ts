import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { iotctlSession } from './iotctl-process';

jest.setTimeout(60_000);

/*
 * iotctl's fleet commands (device types, groups, provisioning keys and the
 * device-side claim) as a real process against the mesh on real servers.
 */
describe('iotctl fleet commands', () => {
  const { ok } = iotctlSession('fleet', 'admin');
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

  it('a device claims itself with a provisioning key; the key lists its use and claims', async () => {
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
  });
});
