import { Code, createClient } from '@connectrpc/connect';
import { CredentialService } from '../../gen/es/iot/device/v1/credential_pb';
import { DeviceEventType, DeviceService } from '../../gen/es/iot/device/v1/device_pb';
import { deviceService } from '@iot-mesh/device';
import { OperatorNats, startOperatorNats } from '../../testing/nats-operator';
import { createTestDatabase, TestDatabase } from '../../testing/postgres';
import { startTestService, TestService } from '../../testing/services';
import { startSigningForTest, TestSigning, TestTenant } from '../../testing/signing';
import { grpcWebTransport, rest, startTestGateway } from './gateway-harness';

jest.setTimeout(120_000);

/* Round trips through the Node gateway to a real device service (own database, operator-mode nats-server) and signing. */
describe('gateway ↔ device', () => {
  let signing: TestSigning;
  let nats: OperatorNats;
  let db: TestDatabase;
  let device: TestService<never>;
  let tenant: TestTenant;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  const gatewayErrors: unknown[] = [];
  const clientClosed: Array<{ path: string }> = [];

  beforeAll(async () => {
    [signing, nats, db] = await Promise.all([startSigningForTest(), startOperatorNats({ mqtt: true }), createTestDatabase('iot_gw_device')]);
    device = (await startTestService(deviceService, {
      DATABASE_URL: db.url,
      SIGNING_ADDRESS: signing.address,
      ...nats.deviceEnv(),
    })) as TestService<never>;
    tenant = await signing.createTenant();
    gateway = await startTestGateway({ signing: signing.address, device: device.address }, ['*'], undefined, {
      onError: (err) => gatewayErrors.push(err),
      onClientClosed: (info) => clientClosed.push(info),
    });
    // Generous: four servers start here, and CI runs two test files side by side on two cores.
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    await device?.stop();
    await signing?.stop();
    await nats?.stop();
    await db?.drop();
  });

  it('manages a device over REST: create from a body field, read, update with a mask, list with filters, delete', async () => {
    const admin = { authorization: tenant.admin.authorization };
    const created = await rest(gateway.base, 'POST', '/v1/devices', { ...admin, body: { name: 'boiler-1', type: 'boiler', labels: { site: 'north' } } });
    expect(created.status).toBe(200);
    const id = created.json.device.id as string;
    expect(created.json.device).toMatchObject({ name: 'boiler-1', type: 'boiler', labels: { site: 'north' }, tenantId: tenant.tenantId });

    const fetched = await rest(gateway.base, 'GET', `/v1/devices/${id}`, { authorization: tenant.viewer.authorization });
    expect(fetched.json.device.id).toBe(id);

    const updated = await rest(gateway.base, 'PATCH', `/v1/devices/${id}?updateMask=labels`, { ...admin, body: { labels: { site: 'south' }, name: 'ignored' } });
    expect(updated.status).toBe(200);
    expect(updated.json.device).toMatchObject({ name: 'boiler-1', labels: { site: 'south' } });

    await rest(gateway.base, 'POST', '/v1/devices:batchCreate', { ...admin, body: { devices: [{ name: 'fan-1', type: 'fan' }, { name: 'fan-2', type: 'fan' }] } });
    const fans = await rest(gateway.base, 'GET', '/v1/devices?type=fan&namePrefix=fan-&page.pageSize=10', admin);
    expect(fans.json.devices.map((d: { name: string }) => d.name).sort()).toEqual(['fan-1', 'fan-2']);
    const offline = await rest(gateway.base, 'GET', '/v1/devices?status=DEVICE_STATUS_ONLINE', admin);
    expect(offline.json.devices ?? []).toEqual([]);

    const deleted = await rest(gateway.base, 'DELETE', `/v1/devices/${id}`, admin);
    expect(deleted).toMatchObject({ status: 200, json: {} });
    const gone = await rest(gateway.base, 'GET', `/v1/devices/${id}`, admin);
    expect(gone).toMatchObject({ status: 404, json: { code: Code.NotFound } });
  });

  it('issues credentials, edits the twin and records commands over REST', async () => {
    const admin = { authorization: tenant.admin.authorization };
    const { json } = await rest(gateway.base, 'POST', '/v1/devices', { ...admin, body: { name: 'meter-1' } });
    const id = json.device.id as string;
    const issued = await rest(gateway.base, 'POST', `/v1/devices/${id}/credential:issue`, { ...admin, body: {} });
    expect(issued.status).toBe(200);
    expect(issued.json.credential).toMatchObject({ deviceId: id, tenantId: tenant.tenantId, mqttUrl: nats.server.mqttUrl });
    expect(issued.json.credential.token.split('.')).toHaveLength(3);

    const twin = await rest(gateway.base, 'PUT', `/v1/devices/${id}/twin/desired`, { ...admin, body: { desired: { interval: 30, mode: 'eco' } } });
    expect(twin.status).toBe(200);
    expect(twin.json.twin).toMatchObject({ deviceId: id, desired: { interval: 30, mode: 'eco' }, desiredVersion: '1' });
    const stale = await rest(gateway.base, 'PUT', `/v1/devices/${id}/twin/desired`, { ...admin, body: { desired: { interval: 5 }, expectedVersion: '7' } });
    // A version mismatch is ABORTED (retry after reading again), which REST maps to 409.
    expect(stale).toMatchObject({ status: 409, json: { code: Code.Aborted } });
    const read = await rest(gateway.base, 'GET', `/v1/devices/${id}/twin`, { authorization: tenant.viewer.authorization });
    expect(read.json.twin.desired).toEqual({ interval: 30, mode: 'eco' });

    const command = await rest(gateway.base, 'POST', `/v1/devices/${id}/commands`, { authorization: tenant.operator.authorization, body: { name: 'reboot', payload: { delay: 1 }, timeout: '2s' } });
    // An offline device is a failed precondition (400 with ErrorInfo DEVICE_OFFLINE), not a service outage.
    expect(command).toMatchObject({ status: 400, json: { code: Code.FailedPrecondition } });
    expect(command.json.details).toContainEqual(expect.objectContaining({ reason: 'DEVICE_OFFLINE' }));
    const history = await rest(gateway.base, 'GET', `/v1/devices/${id}/commands`, { authorization: tenant.viewer.authorization });
    expect(history.json.commands[0]).toMatchObject({ name: 'reboot', status: 'COMMAND_STATUS_DEVICE_OFFLINE', payload: { delay: 1 } });
  });

  it('maps device errors: bad input with field violations, duplicates, roles', async () => {
    const invalid = await rest(gateway.base, 'POST', '/v1/devices', { authorization: tenant.admin.authorization, body: { id: 'Not Valid!', name: 'x' } });
    expect(invalid.status).toBe(400);
    expect(invalid.json.details?.[0]?.['@type']).toBe('type.googleapis.com/google.rpc.BadRequest');
    await rest(gateway.base, 'POST', '/v1/devices', { authorization: tenant.admin.authorization, body: { id: 'dup-1', name: 'dup' } });
    const duplicate = await rest(gateway.base, 'POST', '/v1/devices', { authorization: tenant.admin.authorization, body: { id: 'dup-1', name: 'dup' } });
    expect(duplicate).toMatchObject({ status: 409, json: { code: Code.AlreadyExists } });
    const viewer = await rest(gateway.base, 'POST', '/v1/devices', { authorization: tenant.viewer.authorization, body: { name: 'nope' } });
    expect(viewer).toMatchObject({ status: 403, json: { code: Code.PermissionDenied } });
  });

  it('streams exactly the events of matching devices over gRPC-Web while changes are made over REST', async () => {
    const admin = { authorization: tenant.admin.authorization };
    const devices = createClient(DeviceService, grpcWebTransport(gateway.base));
    const abort = new AbortController();
    const events = devices.watchDevices({ labels: { watch: 'yes' }, changesOnly: true }, { signal: abort.signal, headers: { authorization: tenant.viewer.authorization } })[Symbol.asyncIterator]();
    const next = async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no device event within 15 s')), 15_000)));
      try {
        const { value, done } = await Promise.race([events.next(), timeout]);
        if (done) throw new Error('the watch ended');
        return { type: value.type, id: value.device?.id, name: value.device?.name, labels: value.device?.labels };
      } finally {
        clearTimeout(timer);
      }
    };
    try {
      // The watch subscribes asynchronously: create matching devices until the first one shows.
      const probes: string[] = [];
      let live = false;
      const prober = (async () => {
        for (let i = 0; i < 50 && !live; i++) {
          const created = await rest(gateway.base, 'POST', '/v1/devices', { ...admin, body: { name: `watched-${i}`, labels: { watch: 'yes' } } });
          probes.push(created.json.device.id);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const first = await next();
      live = true;
      await prober;
      expect(first).toMatchObject({ type: DeviceEventType.CREATED, labels: { watch: 'yes' } });
      expect(probes).toContain(first.id);
      // Every probe created after that one arrives, in order.
      for (const id of probes.slice(probes.indexOf(first.id!) + 1)) expect(await next()).toMatchObject({ type: DeviceEventType.CREATED, id });

      // A device without the label is not streamed; the watched one's update and deletion are, and nothing else.
      await rest(gateway.base, 'POST', '/v1/devices', { ...admin, body: { name: 'unwatched', labels: { watch: 'no' } } });
      await rest(gateway.base, 'PATCH', `/v1/devices/${first.id}?updateMask=labels`, { ...admin, body: { labels: { watch: 'yes', floor: '2' } } });
      await rest(gateway.base, 'DELETE', `/v1/devices/${first.id}`, admin);
      expect(await next()).toEqual({ type: DeviceEventType.UPDATED, id: first.id, name: first.name, labels: { watch: 'yes', floor: '2' } });
      expect(await next()).toMatchObject({ type: DeviceEventType.DELETED, id: first.id });
    } finally {
      abort.abort();
    }
  });

  it('filters devices by labels from the URL (labels[key]=value and labels.key=value)', async () => {
    const admin = { authorization: tenant.admin.authorization };
    await rest(gateway.base, 'POST', '/v1/devices:batchCreate', {
      ...admin,
      body: { devices: [{ name: 'lf-1', labels: { site: 'lf-a', floor: '1' } }, { name: 'lf-2', labels: { site: 'lf-a', floor: '2' } }, { name: 'lf-3', labels: { site: 'lf-b', floor: '1' } }] },
    });
    const names = (json: { devices?: Array<{ name: string }> }) => (json.devices ?? []).map((d) => d.name).sort();
    const bySite = await rest(gateway.base, 'GET', '/v1/devices?labels[site]=lf-a', admin);
    expect(bySite.status).toBe(200);
    expect(names(bySite.json)).toEqual(['lf-1', 'lf-2']);
    const both = await rest(gateway.base, 'GET', `/v1/devices?${encodeURIComponent('labels[site]')}=lf-a&labels.floor=2`, admin);
    expect(names(both.json)).toEqual(['lf-2']);
    const whole = await rest(gateway.base, 'GET', '/v1/devices?labels=site', admin);
    expect(whole).toMatchObject({ status: 400, json: { message: expect.stringContaining('labels[key]=value') } });
  });

  it('takes a browser closing a stream as normal: reported as client-closed, not as a gateway error, and counted', async () => {
    const devices = createClient(DeviceService, grpcWebTransport(gateway.base));
    const abort = new AbortController();
    const before = clientClosed.length;
    const watch = devices.watchDevices({}, { signal: abort.signal, headers: { authorization: tenant.viewer.authorization } })[Symbol.asyncIterator]();
    const first = watch.next().catch(() => undefined);
    // Something to stream, so the response is surely under way when the client leaves.
    await rest(gateway.base, 'POST', '/v1/devices', { authorization: tenant.admin.authorization, body: { name: 'stream-closer' } });
    await first;
    abort.abort();
    while (clientClosed.length === before) await new Promise((r) => setTimeout(r, 20));
    expect(clientClosed.at(-1)).toMatchObject({ path: '/iot.device.v1.DeviceService/WatchDevices' });
    expect(gatewayErrors).toEqual([]);
    const scraped = await fetch(`${gateway.base}/metrics`).then((r) => r.text());
    expect(scraped).toMatch(/iot_gateway_client_closed_total\{protocol="grpc-web"\} [1-9]/);
    expect(scraped).toMatch(/iot_gateway_requests_total\{protocol="rest",route="POST \/v1\/devices",status="200"\} [1-9]/);
  });

  it('rotates a credential over gRPC-Web', async () => {
    const { json } = await rest(gateway.base, 'POST', '/v1/devices', { authorization: tenant.admin.authorization, body: { name: 'rotor' } });
    const credentials = createClient(CredentialService, grpcWebTransport(gateway.base));
    const headers = { authorization: tenant.admin.authorization };
    const first = await credentials.issueCredential({ deviceId: json.device.id }, { headers });
    const second = await credentials.rotateCredential({ deviceId: json.device.id }, { headers });
    expect(second.credential?.token).toBeTruthy();
    expect(second.credential?.token).not.toBe(first.credential?.token);
  });
});
