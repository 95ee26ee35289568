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
});
