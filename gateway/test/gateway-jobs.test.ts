import { deviceService } from '@iot-mesh/device';
import { OperatorNats, startOperatorNats } from '../../testing/nats-operator';
import { createTestDatabase, TestDatabase } from '../../testing/postgres';
import { startTestService, TestService } from '../../testing/services';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { rest, startTestGateway } from './gateway-harness';

jest.setTimeout(120_000);

/* Jobs over REST through the Node gateway, as the README's curl examples use them. */
describe('gateway ↔ device job routes', () => {
  let signing: TestSigning;
  let nats: OperatorNats;
  let db: TestDatabase;
  let device: TestService<never>;
  let tenant: TestTenant;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;

  beforeAll(async () => {
    [signing, nats, db] = await Promise.all([startSigningForTest(), startOperatorNats(), createTestDatabase('iot_gw_jobs')]);
    device = (await startTestService(deviceService, { DATABASE_URL: db.url, SIGNING_ADDRESS: signing.address, ...nats.deviceEnv() })) as TestService<never>;
    tenant = await signing.createTenant();
    gateway = await startTestGateway({ signing: signing.address, device: device.address }, ['*']);
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    await device?.stop();
    await Promise.all([signing?.stop(), nats?.stop()]);
    await db?.drop();
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
