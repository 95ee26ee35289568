import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { eventually } from '@iot-mesh/monitoring/test-harness';
import { startMeshForTest, TestMesh } from '../../testing/mesh';
import { TestTenant } from '../../testing/signing';
import { IotctlRun, runIotctl } from './iotctl-process';

jest.setTimeout(60_000);

/* iotctl's dead-letters commands as a real process against the mesh on real servers. */
describe('iotctl dead-letters', () => {
  let mesh: TestMesh;
  let tenant: TestTenant;
  let configHome: string;

  const iotctl = (args: string[], stdin = ''): Promise<IotctlRun> => runIotctl(mesh, configHome, args, stdin);
  async function ok(args: string[], stdin = ''): Promise<string> {
    const run = await iotctl(args, stdin);
    if (run.code !== 0) throw new Error(`iotctl ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
    return run.stdout;
  }

  beforeAll(async () => {
    configHome = fs.mkdtempSync(path.join(os.tmpdir(), 'iotctl-dlq-'));
    mesh = await startMeshForTest();
    tenant = await mesh.signing.createTenant();
    await ok(['login', '--tenant', tenant.tenantName, '--email', tenant.operator.email, '--password-stdin'], `${tenant.operator.password}\n`);
  }, 60_000);

  afterAll(async () => {
    await mesh?.stop();
    if (configHome) fs.rmSync(configHome, { recursive: true, force: true });
  });

  it('lists refused telemetry with the reason and replays it once the device exists', async () => {
    const world = mesh.monitoring;
    await world.publish(tenant.tenantId, 'late', Buffer.from(JSON.stringify({ messageId: 'l1', points: [{ metric: 'temp', numberValue: 3 }] })));
    const listed = await eventually(async () => {
      const rows = JSON.parse(await ok(['dead-letters', 'list', '--device-id', 'late', '-o', 'json']));
      return rows.length > 0 && rows;
    }, 'the dead letter listed');
    expect(listed).toMatchObject([{ deviceId: 'late', reason: 'unknown_device', originalSubject: `iot.${tenant.tenantId}.dev.late.tel` }]);
    expect(await ok(['dead-letters', 'list'])).toMatch(/late\s+unknown_device/);

    const bad = await iotctl(['dead-letters', 'replay', 'abc']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not a dead-letter sequence/);

    await world.registerDevice(tenant.tenantId, 'late');
    expect(JSON.parse(await ok(['dead-letters', 'replay', listed[0].sequence, '-o', 'json']))).toEqual({ replayedCount: 1, notFoundSequences: [], truncatedSequences: [] });
    await eventually(async () => (await world.rowCount(tenant.tenantId)) === 1, 'the replayed message stored');
    expect(JSON.parse(await ok(['dead-letters', 'list', '-o', 'json']))).toEqual([]);
  });
});
