import crypto from 'node:crypto';
import net from 'node:net';
import { connect, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { deviceSubject } from '@iot-mesh/runtime';
import { decodeDesiredState, encodeStateReport } from '../../simulator/src/encoding';
import { DEFAULT_FIRMWARE_PLAN, FirmwareAgent } from '../../simulator/src/firmware';
import { Random } from '../../simulator/src/random';
import { DeviceGatewayWorld, rest, startDeviceGatewayWorld } from './gateway-harness';

jest.setTimeout(120_000);

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/* Stored firmware images over REST: a raw PUT upload, downloads for users and devices with Range, and the simulator's agent fetching one. */
describe('gateway ↔ firmware image routes', () => {
  let world: DeviceGatewayWorld;
  let tenant: DeviceGatewayWorld['tenant'];
  let base: string;
  let typeId: string;
  let nc: NatsConnection | undefined;
  /**
   * The edge address devices are told (DEVICE_FIRMWARE_DOWNLOAD_URL), fixed
   * before the device service starts: a TCP relay to the gateway, which only
   * gets its port later (as a load balancer in front of the edge would).
   */
  let relay: net.Server;
  let gatewayPort = 0;

  beforeAll(async () => {
    relay = net.createServer((socket) => {
      const upstream = net.connect(gatewayPort, '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const edge = `http://127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
    world = await startDeviceGatewayWorld('iot_gw_firmware', { DEVICE_FIRMWARE_DOWNLOAD_URL: edge, DEVICE_CREDENTIAL_DEFAULT_KIND: 'nats' });
    gatewayPort = world.gateway.port;
    ({ tenant } = world);
    base = world.gateway.base;
    typeId = (await rest(base, 'POST', '/v1/deviceTypes', { authorization: tenant.operator.authorization, body: { name: 'meter' } })).json.deviceType.id;
  }, 120_000);

  afterAll(async () => {
    await nc?.close();
    await world?.stop();
    await new Promise((r) => relay?.close(r));
  });

  const put = (id: string, body: Buffer, authorization = tenant.operator.authorization) =>
    fetch(`${base}/v1/firmware/${id}/image`, { method: 'PUT', headers: { authorization, 'content-type': 'application/octet-stream' }, body });

  it('uploads a raw image in one PUT (split into chunks by the gateway) and downloads it whole and by Range with its digest', async () => {
    const image = crypto.randomBytes(2 * 1024 * 1024 + 777);
    const created = await rest(base, 'POST', '/v1/firmware', { authorization: tenant.operator.authorization, body: { version: '1.0', deviceTypeId: typeId, stored: true, sha256: sha(image) } });
    expect(created.status).toBe(200);
    const id = created.json.firmware.id;
    expect((await put(id, image, tenant.viewer.authorization)).status).toBe(403);
    const uploaded = await put(id, image);
    expect(uploaded.status).toBe(200);
    expect(((await uploaded.json()) as { firmware: unknown }).firmware).toMatchObject({ uploadComplete: true, sizeBytes: String(image.length), sha256: sha(image) });

    const whole = await fetch(`${base}/v1/firmware/${id}/image`, { headers: { authorization: tenant.viewer.authorization } });
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-length')).toBe(String(image.length));
    expect(whole.headers.get('x-checksum-sha256')).toBe(sha(image));
    expect(whole.headers.get('repr-digest')).toBe(`sha-256=:${Buffer.from(sha(image), 'hex').toString('base64')}:`);
    expect(Buffer.from(await whole.arrayBuffer()).equals(image)).toBe(true);

    const part = await fetch(`${base}/v1/firmware/${id}/image`, { headers: { authorization: tenant.viewer.authorization, range: 'bytes=1048570-1048579' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1048570-1048579/${image.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(image.subarray(1048570, 1048580))).toBe(true);
    const past = await fetch(`${base}/v1/firmware/${id}/image`, { headers: { authorization: tenant.viewer.authorization, range: `bytes=${image.length}-` } });
    expect(past.status).toBe(400);
    expect(((await past.json()) as { code: number }).code).toBe(11);
  });

  it('answers 413 with a google.rpc.Status when the image passes the size limit, and 400 when the declared digest does not match', async () => {
    const created = await rest(base, 'POST', '/v1/firmware', { authorization: tenant.operator.authorization, body: { version: '2.0', deviceTypeId: typeId, stored: true, sha256: sha(Buffer.from('other')) } });
    const mismatch = await put(created.json.firmware.id, crypto.randomBytes(5000));
    expect(mismatch.status).toBe(400);
    expect(JSON.stringify(await mismatch.json())).toContain('firmware.sha256');
    const big = await rest(base, 'POST', '/v1/firmware', { authorization: tenant.operator.authorization, body: { version: '2.1', deviceTypeId: typeId, stored: true } });
    // DEVICE_FIRMWARE_MAX_IMAGE_BYTES defaults to 64 MiB.
    const tooLarge = await put(big.json.firmware.id, Buffer.alloc(64 * 1024 * 1024 + 1));
    expect(tooLarge.status).toBe(413);
    expect(await tooLarge.json()).toMatchObject({ code: 8, message: expect.stringContaining('DEVICE_FIRMWARE_MAX_IMAGE_BYTES') });
  });

  it('lets a device a campaign targets download the image with its own credential; the simulator agent verifies it and installs', async () => {
    const image = crypto.randomBytes(100_000);
    const id = (await rest(base, 'POST', '/v1/firmware', { authorization: tenant.operator.authorization, body: { version: '3.0', deviceTypeId: typeId, stored: true } })).json.firmware.id;
    expect((await put(id, image)).status).toBe(200);
    const devices = await rest(base, 'POST', '/v1/devices:batchCreate', { authorization: tenant.operator.authorization, body: { devices: ['gf-1', 'gf-2'].map((d) => ({ id: d, name: d, deviceTypeId: typeId })), issueCredentials: true } });
    expect(devices.status).toBe(200);
    const [target, bystander] = devices.json.credentials as { deviceId: string; token: string }[];
    expect((await rest(base, 'POST', '/v1/campaigns', { authorization: tenant.operator.authorization, body: { firmwareId: id, deviceIds: [target.deviceId] } })).status).toBe(200);
    const path = `/v1/tenants/${tenant.tenantId}/firmware/${id}/image`;
    expect((await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${bystander.token}` } })).status).toBe(403);
    expect((await fetch(`${base}${path}`)).status).toBe(401);
    const own = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${target.token}`, range: 'bytes=99990-' } });
    expect(own.status).toBe(206);
    expect(Buffer.from(await own.arrayBuffer()).equals(image.subarray(99990))).toBe(true);

    const reports: unknown[] = [];
    const agent = new FirmwareAgent({ ...DEFAULT_FIRMWARE_PLAN, version: '1.0', installMs: 1 }, new Random(1), async () => void reports.push(agent.reported()), { tenantId: tenant.tenantId, token: target.token });
    await agent.desired({ firmware: { version: '3.0', url: `${base}${path}`, sha256: sha(image) } });
    expect(agent.reported()).toEqual({ version: '3.0', status: 'succeeded' });
    // A wrong digest is caught by the agent, not installed.
    const wary = new FirmwareAgent({ ...DEFAULT_FIRMWARE_PLAN, version: '1.0', installMs: 1 }, new Random(1), async () => undefined, { tenantId: tenant.tenantId, token: target.token });
    await wary.desired({ firmware: { version: '3.0', url: `${base}${path}`, sha256: sha(Buffer.from('x')) } });
    expect(wary.reported()).toMatchObject({ version: '1.0', status: 'failed', reason: expect.stringContaining('checksum mismatch') });
  });

  it('end to end: a campaign of a stored image; the simulated device downloads it from the URL the platform set, verifies it and reports success', async () => {
    const image = crypto.randomBytes(200_000);
    const id = (await rest(base, 'POST', '/v1/firmware', { authorization: tenant.operator.authorization, body: { version: '5.0', deviceTypeId: typeId, stored: true } })).json.firmware.id;
    expect((await put(id, image)).status).toBe(200);
    const created = await rest(base, 'POST', '/v1/devices:batchCreate', { authorization: tenant.operator.authorization, body: { devices: [{ id: 'gf-e2e', name: 'gf-e2e', deviceTypeId: typeId }], issueCredentials: true } });
    const credential = created.json.credentials[0] as { deviceId: string; token: string; seed: string; natsUrl: string };
    nc = await connect({ servers: credential.natsUrl, authenticator: deviceUserAuthenticator(credential), reconnect: false });
    const connection = nc;
    const agent = new FirmwareAgent({ ...DEFAULT_FIRMWARE_PLAN, version: '1.0', installMs: 1 }, new Random(3), async () => {
      connection.publish(deviceSubject(tenant.tenantId, 'gf-e2e', 'state'), encodeStateReport({ firmware: agent.reported() }, 'json'));
    }, { tenantId: tenant.tenantId, token: credential.token });
    connection.subscribe(deviceSubject(tenant.tenantId, 'gf-e2e', 'desired'), { callback: (_err, msg) => void agent.desired(decodeDesiredState(msg.data).desired ?? {}) });
    await connection.flush();

    const campaign = (await rest(base, 'POST', '/v1/campaigns', { authorization: tenant.operator.authorization, body: { firmwareId: id, deviceIds: ['gf-e2e'] } })).json.campaign;
    let state = '';
    while (state !== 'CAMPAIGN_STATE_COMPLETED') {
      const got = (await rest(base, 'GET', `/v1/campaigns/${campaign.id}`, { authorization: tenant.viewer.authorization })).json.campaign;
      expect(got.state).not.toBe('CAMPAIGN_STATE_ABORTED');
      state = got.state;
      if (state === 'CAMPAIGN_STATE_COMPLETED') expect(got.counts).toMatchObject({ total: 1, succeeded: 1 });
      else await new Promise((r) => setTimeout(r, 100));
    }
    expect(agent.reported()).toEqual({ version: '5.0', status: 'succeeded' });
  });
});
