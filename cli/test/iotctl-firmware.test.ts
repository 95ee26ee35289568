import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { iotctlSession } from './iotctl-process';

jest.setTimeout(60_000);

/*
 * iotctl firmware and campaigns as a real process against the mesh: an
 * artefact registered from a local image (size and SHA-256 computed), a
 * campaign over an offline device (its canary stays queued), its devices,
 * and cancelling it.
 */
describe('iotctl firmware and campaigns', () => {
  const { ok, iotctl } = iotctlSession('firmware', 'admin');
  let dir: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotctl-firmware-'));
  });

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('registers firmware from an image, runs a campaign over a device of its type and cancels it', async () => {
    const typeFile = path.join(dir, 'meter.json');
    fs.writeFileSync(typeFile, JSON.stringify({ name: 'meter' }));
    const type = JSON.parse(await ok(['device-types', 'create', '--file', typeFile, '-o', 'json']));
    const key = JSON.parse(await ok(['provisioning', 'keys', 'create', '--name', 'fw', '--device-type', 'meter', '-o', 'json']));
    const { device } = JSON.parse(await ok(['provisioning', 'claim', '--key', key.secret, '--serial', 'FW-1', '-o', 'json']));

    const image = path.join(dir, 'meter-2.0.bin');
    fs.writeFileSync(image, crypto.randomBytes(4096));
    const sha256 = crypto.createHash('sha256').update(fs.readFileSync(image)).digest('hex');
    const fw = JSON.parse(await ok(['firmware', 'create', '--release', '2.0', '--type', type.id, '--file', image, '--url', 'https://files.example.com/meter-2.0.bin', '-o', 'json']));
    expect(fw).toMatchObject({ version: '2.0', deviceTypeId: type.id, sizeBytes: '4096', sha256 });
    expect(await ok(['firmware', 'list', '--type', type.id])).toContain(sha256);
    const bad = await iotctl(['firmware', 'create', '--release', '2.1', '--type', type.id, '--size', '1', '--sha256', 'nope', '--url', 'ftp://x']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('firmware.sha256');

    const campaign = JSON.parse(await ok(['campaigns', 'create', '--firmware', fw.id, '--devices', device.id, '--canary-percent', '50', '--failure-percent', '10', '-o', 'json']));
    expect(campaign).toMatchObject({ state: 'CAMPAIGN_STATE_RUNNING', stage: 'CAMPAIGN_STAGE_CANARY', version: '2.0', counts: { total: 1, queued: 1 } });
    const devices = JSON.parse(await ok(['campaigns', 'devices', '--campaign', campaign.id, '-o', 'json']));
    expect(devices).toEqual([expect.objectContaining({ deviceId: device.id, stage: 'CAMPAIGN_STAGE_CANARY', state: 'JOB_DEVICE_STATE_QUEUED' })]);
    expect(await ok(['campaigns', 'list'])).toMatch(new RegExp(`${campaign.id} +2\\.0 +device list +running +canary +0/1 done`));
    const cancelled = JSON.parse(await ok(['campaigns', 'cancel', campaign.id, '-o', 'json']));
    expect(cancelled).toMatchObject({ state: 'CAMPAIGN_STATE_CANCELLED', counts: { total: 1, cancelled: 1 } });
    expect(await ok(['campaigns', 'watch', campaign.id])).toMatch(/^cancelled canary 1\/1 done/);
    await ok(['firmware', 'delete', fw.id]);
  });

  it('uploads an image to the platform (SHA-256 computed there) and downloads it again, checked', async () => {
    fs.writeFileSync(path.join(dir, 'sensor.json'), JSON.stringify({ name: 'sensor' }));
    const type = JSON.parse(await ok(['device-types', 'create', '--file', path.join(dir, 'sensor.json'), '-o', 'json']));
    const bytes = crypto.randomBytes(1024 * 1024 + 100);
    const image = path.join(dir, 'sensor-3.0.bin');
    fs.writeFileSync(image, bytes);
    const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
    const uploaded = await iotctl(['firmware', 'upload', image, '--release', '3.0', '--type', type.id, '-o', 'json']);
    expect(uploaded.code).toBe(0);
    expect(uploaded.stderr).toContain(`uploaded ${bytes.length} of ${bytes.length} bytes`);
    const fw = JSON.parse(uploaded.stdout);
    expect(fw).toMatchObject({ version: '3.0', stored: true, uploadComplete: true, sizeBytes: String(bytes.length), sha256 });
    expect(fw.url).toContain(`/firmware/${fw.id}/image`);
    const out = path.join(dir, 'back.bin');
    await ok(['firmware', 'download', fw.id, '--out', out]);
    expect(fs.readFileSync(out).equals(bytes)).toBe(true);
    // A declared digest the file does not have: refused, exit code not 0.
    const wrong = await iotctl(['firmware', 'upload', image, '--release', '3.1', '--type', type.id, '--sha256', 'a'.repeat(64)]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain('firmware.sha256');
  });
});
