import { eventually } from '@iot-mesh/monitoring/test-harness';
import { iotctlSession } from './iotctl-process';

jest.setTimeout(60_000);

/* iotctl's dead-letters commands as a real process against the mesh on real servers. */
describe('iotctl dead-letters', () => {
  const cli = iotctlSession('dlq', 'operator');
  const { iotctl, ok } = cli;

  it('lists refused telemetry with the reason and replays it once the device exists', async () => {
    const world = cli.mesh.monitoring;
    await world.publish(cli.tenant.tenantId, 'late', Buffer.from(JSON.stringify({ messageId: 'l1', points: [{ metric: 'temp', numberValue: 3 }] })));
    const listed = await eventually(async () => {
      const rows = JSON.parse(await ok(['dead-letters', 'list', '--device-id', 'late', '-o', 'json']));
      return rows.length > 0 && rows;
    }, 'the dead letter listed');
    expect(listed).toMatchObject([{ deviceId: 'late', reason: 'unknown_device', originalSubject: `iot.${cli.tenant.tenantId}.dev.late.tel` }]);
    expect(await ok(['dead-letters', 'list'])).toMatch(/late\s+unknown_device/);
    // Counted per reason over a window (the last 24 h by default).
    expect(JSON.parse(await ok(['dead-letters', 'count', '-o', 'json']))).toEqual([{ reason: 'unknown_device', count: '1' }]);
    expect(await ok(['dead-letters', 'count', '--device-id', 'late'])).toMatch(/unknown_device\s+1/);
    expect(JSON.parse(await ok(['dead-letters', 'count', '--to', '2020-01-01', '--from', '2019-12-31', '-o', 'json']))).toEqual([]);
    const backwards = await iotctl(['dead-letters', 'count', '--from', 'now', '--to', '1h']);
    expect(backwards.code).not.toBe(0);
    expect(backwards.stderr).toMatch(/--from must be before --to/);

    const bad = await iotctl(['dead-letters', 'replay', 'abc']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not a dead-letter sequence/);

    await world.registerDevice(cli.tenant.tenantId, 'late');
    expect(JSON.parse(await ok(['dead-letters', 'replay', listed[0].sequence, '-o', 'json']))).toEqual({ replayedCount: 1, notFoundSequences: [], truncatedSequences: [] });
    await eventually(async () => (await world.rowCount(cli.tenant.tenantId)) === 1, 'the replayed message stored');
    expect(JSON.parse(await ok(['dead-letters', 'list', '-o', 'json']))).toEqual([]);
  });
});
