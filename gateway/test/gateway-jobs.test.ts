import { DeviceGatewayWorld, rest, startDeviceGatewayWorld } from './gateway-harness';

jest.setTimeout(120_000);

/* Jobs over REST through the Node gateway, as the README's curl examples use them. */
describe('gateway ↔ device job routes', () => {
  let world: DeviceGatewayWorld;
  let tenant: DeviceGatewayWorld['tenant'];
  let gateway: DeviceGatewayWorld['gateway'];

  beforeAll(async () => {
    world = await startDeviceGatewayWorld('iot_gw_jobs');
    ({ tenant, gateway } = world);
  }, 120_000);

  afterAll(async () => {
    await world?.stop();
  });

  it('creates a job over a group, reads it and its (offline, queued) devices, cancels it; a viewer cannot create one', async () => {
    const auth = tenant.operator.authorization;
    for (const id of ['gj-1', 'gj-2']) expect((await rest(gateway.base, 'POST', '/v1/devices', { authorization: auth, body: { id, name: id, labels: { site: 'plant-7' } } })).status).toBe(200);
    const group = await rest(gateway.base, 'POST', '/v1/groups', { authorization: auth, body: { name: 'plant 7', selector: { matchLabels: { site: 'plant-7' } } } });
    const body = { command: { name: 'reboot', params: { delay: 5 }, timeout: '10s' }, groupId: group.json.group.id, rollout: { maxInFlight: 20, maxPerSecond: 10, abortThresholdPercent: 10, abortMinFinished: 20 } };
    const created = await rest(gateway.base, 'POST', '/v1/jobs', { authorization: auth, body });
    expect(created.status).toBe(200);
    expect(created.json.job).toMatchObject({ state: 'JOB_STATE_RUNNING', command: { name: 'reboot', params: { delay: 5 }, timeout: '10s' }, counts: { total: 2, queued: 2 } });
    const id = created.json.job.id;
    expect((await rest(gateway.base, 'GET', `/v1/jobs/${id}`, { authorization: tenant.viewer.authorization })).json.job.id).toBe(id);
    const queued = await rest(gateway.base, 'GET', `/v1/jobs/${id}/devices?state=JOB_DEVICE_STATE_QUEUED`, { authorization: auth });
    expect(queued.json.devices.map((d: { deviceId: string }) => d.deviceId)).toEqual(['gj-1', 'gj-2']);
    const cancelled = await rest(gateway.base, 'POST', `/v1/jobs/${id}:cancel`, { authorization: auth, body: {} });
    expect(cancelled.json.job).toMatchObject({ state: 'JOB_STATE_CANCELLED', counts: { cancelled: 2 } });
    expect((await rest(gateway.base, 'POST', '/v1/jobs', { authorization: tenant.viewer.authorization, body })).status).toBe(403);
    expect((await rest(gateway.base, 'POST', '/v1/jobs', { authorization: auth, body: { groupId: group.json.group.id } })).status).toBe(400);
  });
});
