import crypto from 'node:crypto';
import { eventually } from '@iot-mesh/monitoring/test-harness';
import { iotctlSession } from './iotctl-process';

jest.setTimeout(60_000);

/* iotctl's rules and notification-channel commands as a real process against the mesh on real servers. */
describe('iotctl rules', () => {
  const cli = iotctlSession('rules', 'admin');
  const { iotctl, ok } = cli;

  it('creates a channel and a rule, lists them, dry-runs the rule and refuses a looping one', async () => {
    const channel = JSON.parse(await ok(['rules', 'channels', 'create', '--name', 'bus', '--nats', 'ops', '--per-minute', '5', '-o', 'json']));
    expect(channel).toMatchObject({ name: 'bus', nats: { topic: 'ops' }, rateLimitPerMinute: 5 });

    const created = JSON.parse(
      await ok(['rules', 'create', '--name', 'celsius', '--metric', 'temp_f', '--when', 'm.temp_f > 100.0', '--derive', 'temp_c=(m.temp_f - 32.0) * 5.0 / 9.0', '--notify', channel.id, '--webhook', 'http://127.0.0.1:9/hook', '-o', 'json']),
    );
    expect(created.actions).toHaveLength(3);
    // Actions in the order derive, republish, webhook, notify.
    expect(created.actions[1].webhook.secret).toMatch(/^whsec_/);
    const table = await ok(['rules', 'list']);
    expect(table).toMatch(/celsius\s+m\.temp_f > 100\.0\s+derive temp_c = \(m\.temp_f - 32\.0\) \* 5\.0 \/ 9\.0; webhook http:\/\/127\.0\.0\.1:9\/hook; notify/);
    expect(JSON.parse(await ok(['rules', 'get', created.id, '-o', 'json'])).actions[1].webhook.secret).toBeUndefined();
    expect(JSON.parse(await ok(['rules', 'dry-run', created.id, '--since', '1h', '-o', 'json']))).toEqual([]);
    expect(JSON.parse(await ok(['rules', 'deliveries', '--rule', created.id, '--state', 'dead-lettered', '-o', 'json']))).toEqual([]);

    const loop = await iotctl(['rules', 'create', '--name', 'loop', '--metric', 'temp', '--when', 'true', '--derive', 'temp=m.temp + 1.0']);
    expect(loop.code).not.toBe(0);
    expect(loop.stderr).toMatch(/would loop: temp is one of the rule's own source metrics/);

    await ok(['rules', 'delete', created.id]);
    expect(JSON.parse(await ok(['rules', 'list', '-o', 'json']))).toEqual([]);
  });

  it('creates a rule and an alert rule for a device group; an unknown group is refused', async () => {
    const group = crypto.randomUUID();
    await cli.mesh.monitoring.putGroup(cli.tenant.tenantId, group, { floor: '2' });
    const byGroup = await eventually(async () => {
      const res = await iotctl(['rules', 'create', '--name', 'floor-two', '--metric', 'temp', '--when', 'm.temp > 30.0', '--republish', 'hot', '--group', group, '-o', 'json']);
      return res.code === 0 && JSON.parse(res.stdout);
    }, 'the rule created once monitoring knows the group');
    expect(byGroup.source.groupIds).toEqual([group]);
    const alertRule = JSON.parse(await ok(['alerts', 'rules', 'create', '--name', 'floor two hot', '--metric', 'temp', '--above', '30', '--group', group, '-o', 'json']));
    expect(alertRule.groupIds).toEqual([group]);
    const unknown = await iotctl(['rules', 'create', '--name', 'nowhere', '--metric', 'temp', '--when', 'true', '--republish', 'x', '--group', crypto.randomUUID()]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/group .* not found/i);
  });
});
