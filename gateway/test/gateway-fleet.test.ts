import { DeviceGatewayWorld, rest, startDeviceGatewayWorld } from './gateway-harness';

jest.setTimeout(120_000);

/* Device types, provisioning and groups over REST through the Node gateway, as the README's curl examples use them. */
describe('gateway ↔ device fleet routes', () => {
  let world: DeviceGatewayWorld;
  let tenant: DeviceGatewayWorld['tenant'];
  let gateway: DeviceGatewayWorld['gateway'];

  beforeAll(async () => {
    world = await startDeviceGatewayWorld('iot_gw_fleet');
    ({ tenant, gateway } = world);
  }, 120_000);

  afterAll(async () => {
    await world?.stop();
  });

  it('creates a type, a key and a group; a device claims itself without a login; bad desired state is a 400 with field violations', async () => {
    const auth = tenant.admin.authorization;
    const type = await rest(gateway.base, 'POST', '/v1/deviceTypes', {
      authorization: auth,
      body: { name: 'pump', metrics: [{ name: 'flow', unit: 'l/min', kind: 'METRIC_KIND_GAUGE' }], desiredSchema: { type: 'object', properties: { rpm: { type: 'integer', maximum: 3000 } } } },
    });
    expect(type.status).toBe(200);
    expect(type.json.deviceType.metrics[0]).toMatchObject({ name: 'flow', unit: 'l/min' });

    const key = await rest(gateway.base, 'POST', '/v1/provisioningKeys', { authorization: auth, body: { name: 'line 1', deviceTypeId: 'pump', labels: { site: 'north' }, usageLimit: '10' } });
    expect(key.status).toBe(200);
    const claim = await rest(gateway.base, 'POST', '/v1/provisioning:claim', { body: { provisioningKey: key.json.secret, serialNumber: 'P-1' } });
    expect(claim.status).toBe(200);
    expect(claim.json).toMatchObject({ outcome: 'CLAIM_OUTCOME_CREATED', device: { type: 'pump', serialNumber: 'P-1', labels: { site: 'north' } } });
    expect(claim.json.credential.token).toMatch(/^eyJ/);
    const refused = await rest(gateway.base, 'POST', '/v1/provisioning:claim', { body: { provisioningKey: 'iotpk_wrong', serialNumber: 'P-1' } });
    expect(refused.status).toBe(403);

    const desired = await rest(gateway.base, 'PUT', `/v1/devices/${claim.json.device.id}/twin/desired`, { authorization: auth, body: { desired: { rpm: 9000 } } });
    expect(desired.status).toBe(400);
    expect(JSON.stringify(desired.json)).toContain('desired.rpm');

    const group = await rest(gateway.base, 'POST', '/v1/groups', { authorization: auth, body: { name: 'north', selector: { matchLabels: { site: 'north' } } } });
    expect(group.status).toBe(200);
    const members = await rest(gateway.base, 'GET', `/v1/groups/${group.json.group.id}/devices`, { authorization: auth });
    expect(members.json.devices.map((d: { serialNumber: string }) => d.serialNumber)).toEqual(['P-1']);
    const listed = await rest(gateway.base, 'GET', `/v1/devices?groupId=${group.json.group.id}`, { authorization: auth });
    expect(listed.json.devices.map((d: { id: string }) => d.id)).toEqual([claim.json.device.id]);
    const sessions = await rest(gateway.base, 'GET', `/v1/devices/${claim.json.device.id}/sessions`, { authorization: auth });
    // Proto3 JSON leaves out an empty list: the device never connected.
    expect([sessions.status, sessions.json.sessions]).toEqual([200, undefined]);
  });
});
