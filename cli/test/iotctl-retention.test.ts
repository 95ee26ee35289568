import fs from 'node:fs';
import path from 'node:path';
import { eventually, jsonPayload } from '@iot-mesh/monitoring/test-harness';
import { iotctlSession } from './iotctl-process';

// hyparquet ships only ES modules (jest transforms them, see jest.config.js).
type HyparquetModule = typeof import('hyparquet', { with: { 'resolution-mode': 'import' } });
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { parquetReadObjects } = require('hyparquet') as HyparquetModule;

jest.setTimeout(60_000);

/* iotctl's retention policies, a Parquet export over ExportPoints and an alert rule with notifications, as a real process against the mesh. */
describe('iotctl retention, export and alert notifications', () => {
  const cli = iotctlSession('retention', 'admin');
  const { iotctl, ok } = cli;

  it('sets and lists retention per tenant and device type, showing what is inherited', async () => {
    const initial = JSON.parse(await ok(['retention', 'get', '-o', 'json']));
    expect(initial).toMatchObject({ effectiveRawDays: 30 });
    expect(JSON.parse(await ok(['retention', 'set', '--raw-days', '7', '--rollup-days', '90', '-o', 'json']))).toMatchObject({ rawDays: 7, rollupDays: 90, effectiveRawDays: 7 });
    expect(JSON.parse(await ok(['retention', 'set', '--type', 'meter', '--raw-days', '2', '-o', 'json']))).toMatchObject({ deviceType: 'meter', rawDays: 2, effectiveRollupDays: 90 });
    const table = await ok(['retention', 'list']);
    expect(table).toMatch(/\(tenant default\)\s+7\s+90/);
    expect(table).toMatch(/meter\s+2\s+90 \(inherited\)/);
    const bad = await iotctl(['retention', 'set', '--type', 'Bad Type', '--raw-days', '1']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/device_type/);
  });

  it('exports a device type as Parquet to a file through the ExportPoints stream, progress on stderr', async () => {
    const world = cli.mesh.monitoring;
    await world.registerDevice(cli.tenant.tenantId, 'meter-9', { type: 'meter' });
    const start = Date.now() - 10 * 60_000;
    const points = Array.from({ length: 20 }, (_, i) => ({ metric: 'kwh', time: new Date(start + i * 1000).toISOString(), numberValue: i / 2 }));
    await world.publish(cli.tenant.tenantId, 'meter-9', jsonPayload({ messageId: 'parquet-seed', points }));
    await eventually(async () => (await world.rowCount(cli.tenant.tenantId)) >= 20, 'stored points');
    const file = path.join(cli.configHome, 'meters.parquet');
    const run = await iotctl(['export', '--type', 'meter', '--from', '1h', '--format', 'parquet', '--file', file]);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/exported .* to /);
    const bytes = fs.readFileSync(file);
    const rows = await parquetReadObjects({ file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
    expect(rows.map((r) => [r.device_id, r.metric, r.number_value])).toEqual(points.map((p) => ['meter-9', 'kwh', p.numberValue]));
    const usage = await iotctl(['export', '--from', '1h']);
    expect(usage.code).not.toBe(0);
  });

  it('creates an alert rule that notifies a channel with a repeat interval and quiet hours', async () => {
    const channel = JSON.parse(await ok(['rules', 'channels', 'create', '--name', 'ops', '--nats', 'ops', '-o', 'json']));
    const rule = JSON.parse(
      await ok(['alerts', 'rules', 'create', '--name', 'hot', '--metric', 'temp', '--above', '30', '--channel', channel.id, '--repeat', '1h', '--quiet-hours', '22:00-07:00', '--time-zone', 'Europe/Berlin', '-o', 'json']),
    );
    expect(rule.notification).toEqual({ channelIds: [channel.id], repeatInterval: { seconds: '3600' }, quietHours: { start: '22:00', end: '07:00', timeZone: 'Europe/Berlin' } });
    const orphan = await iotctl(['alerts', 'rules', 'create', '--name', 'x', '--metric', 'temp', '--above', '1', '--repeat', '1h']);
    expect(orphan.code).not.toBe(0);
    expect(orphan.stderr).toMatch(/need --channel/);
    const missing = await iotctl(['alerts', 'deliveries', '00000000-0000-0000-0000-000000000000']);
    expect(missing.code).not.toBe(0);
  });
});
