import { status } from '@grpc/grpc-js';
import crypto from 'node:crypto';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { connect, NatsConnection } from 'nats';
import { deviceUserAuthenticator } from '@iot-mesh/nats-auth';
import { deviceSubject, insecureClient, serverStream, unary } from '@iot-mesh/runtime';
import { Device, DeviceCredential, DeviceStatus } from '../../../gen/ts/iot/device/v1/device';
import { Campaign, CampaignDevice, CampaignServiceClient, CampaignStage, CampaignState, Firmware, FirmwareServiceClient } from '../../../gen/ts/iot/device/v1/firmware';
import { JobDeviceState } from '../../../gen/ts/iot/device/v1/jobs';
import { decodeDesiredState, encodeStateReport } from '../../../simulator/src/encoding';
import { DEFAULT_FIRMWARE_PLAN, FirmwareAgent, FirmwarePlan } from '../../../simulator/src/firmware';
import { Random } from '../../../simulator/src/random';
import { startTestService, TestService } from '../../../testing/services';
import { TestTenant } from '../../../testing/signing';
import { deviceService } from '../src/main';
import { createDeviceType, DeviceHarness, eventually, failure, startDeviceHarness } from './harness';

jest.setTimeout(120_000);

let h: DeviceHarness;
let t: TestTenant;
let address: string;
let firmware: FirmwareServiceClient;
let campaigns: CampaignServiceClient;
let deviceTypeId: string;
/** The device service after the restart test replaced the harness's. */
let replacement: TestService<never> | undefined;
let files: http.Server;
let baseUrl: string;
const IMAGE = crypto.randomBytes(64 * 1024);
const IMAGE_SHA = crypto.createHash('sha256').update(IMAGE).digest('hex');
const connections: NatsConnection[] = [];
/** Per device: the desired-state versions that carried firmware (a repeated step would add one). */
const firmwareDeliveries = new Map<string, Set<string>>();

beforeAll(async () => {
  files = http.createServer((req, res) => {
    if (req.url === '/image.bin') res.end(IMAGE);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  h = await startDeviceHarness({ env: { DEVICE_CREDENTIAL_DEFAULT_KIND: 'nats' } });
  t = await h.signing.createTenant();
  connectClients(h.device.address);
  deviceTypeId = (await createDeviceType(address, t.operator.authorization, { name: 'meter' })).id;
});
afterAll(async () => {
  firmware?.close();
  campaigns?.close();
  for (const nc of connections) await nc.close().catch(() => undefined);
  await replacement?.stop();
  await h?.stop();
  await new Promise((r) => files?.close(r));
});

function connectClients(at: string): void {
  firmware?.close();
  campaigns?.close();
  address = at;
  firmware = insecureClient(FirmwareServiceClient, at);
  campaigns = insecureClient(CampaignServiceClient, at);
}

const op = () => ({ authorization: t.operator.authorization });
const viewer = () => ({ authorization: t.viewer.authorization });

async function createFirmware(version: string, sha256 = IMAGE_SHA): Promise<Firmware> {
  const created = await unary(firmware, firmware.createFirmware, { firmware: Firmware.fromPartial({ version, deviceTypeId, sizeBytes: BigInt(IMAGE.length), sha256, url: `${baseUrl}/image.bin` }) }, op());
  return created.firmware!;
}

/** Creates devices of the meter type with NATS credentials. */
async function createDevices(ids: string[]): Promise<Map<string, DeviceCredential>> {
  const devices = ids.map((id) => Device.fromPartial({ id, name: id, deviceTypeId }));
  const clients = h.clients.devices;
  const response = await unary(clients, clients.batchCreateDevices, { devices, issueCredentials: true }, { ...op(), deadlineMs: 60_000 });
  return new Map(response.credentials.map((c) => [c.deviceId, c]));
}

/** Connects a simulated device running the simulator's firmware agent with `plan`. */
async function simulate(credential: DeviceCredential, plan: Partial<FirmwarePlan>): Promise<void> {
  const nc = await connect({ servers: h.nats.server.url, authenticator: deviceUserAuthenticator(credential), reconnect: false });
  connections.push(nc);
  const { deviceId } = credential;
  const agent = new FirmwareAgent({ ...DEFAULT_FIRMWARE_PLAN, version: '1.0', installMs: 50, ...plan }, new Random(7), async () => {
    nc.publish(deviceSubject(t.tenantId, deviceId, 'state'), encodeStateReport({ firmware: agent.reported() }, 'json'));
  });
  nc.subscribe(deviceSubject(t.tenantId, deviceId, 'desired'), {
    callback: (_err, msg) => {
      const desired = decodeDesiredState(msg.data);
      const doc = desired.desired ?? {};
      const seen = firmwareDeliveries.get(deviceId) ?? new Set<string>();
      const repeated = seen.has(String(desired.version));
      if (doc.firmware) {
        seen.add(String(desired.version));
        firmwareDeliveries.set(deviceId, seen);
      }
      void agent.desired(doc, repeated);
    },
  });
  await nc.flush();
}

async function online(ids: string[]): Promise<void> {
  await eventually('the devices are online', async () => {
    const devices = await Promise.all(ids.map((id) => unary(h.clients.devices, h.clients.devices.getDevice, { id }, viewer())));
    return devices.every((d) => d.device!.status === DeviceStatus.DEVICE_STATUS_ONLINE) || undefined;
  });
}

async function getCampaign(id: string): Promise<Campaign> {
  return (await unary(campaigns, campaigns.getCampaign, { id }, viewer())).campaign!;
}

async function campaignDevices(id: string, pageSize = 7): Promise<CampaignDevice[]> {
  const all: CampaignDevice[] = [];
  let pageToken = '';
  do {
    const page = await unary(campaigns, campaigns.listCampaignDevices, { id, page: { pageSize, pageToken } }, viewer());
    all.push(...page.devices);
    pageToken = page.page!.nextPageToken;
  } while (pageToken);
  return all;
}

/** Watches the campaign to its end; the last message. */
async function watchToEnd(id: string): Promise<Campaign[]> {
  const seen: Campaign[] = [];
  for await (const m of serverStream(campaigns, campaigns.watchCampaign, { id }, { ...viewer(), deadlineMs: 90_000 })) seen.push(m.campaign!);
  return seen;
}

async function reportedVersion(id: string): Promise<unknown> {
  const twin = (await unary(h.clients.twin, h.clients.twin.getTwin, { deviceId: id }, viewer())).twin!;
  return (twin.reported as { firmware?: { version?: string } } | undefined)?.firmware?.version;
}

test('firmware and campaigns are validated field by field; viewers cannot create; firmware is tenant-scoped', async () => {
  const bad = await failure(unary(firmware, firmware.createFirmware, { firmware: Firmware.fromPartial({ version: 'bad version!', deviceTypeId, sha256: 'xyz', url: 'ftp://x/y' }) }, op()));
  expect(bad.code).toBe(status.INVALID_ARGUMENT);
  expect(bad.fields).toEqual(expect.arrayContaining(['firmware.version', 'firmware.size_bytes', 'firmware.sha256', 'firmware.url']));
  expect((await failure(unary(firmware, firmware.createFirmware, { firmware: Firmware.fromPartial({ version: '9', deviceTypeId: 'nope', sizeBytes: 1n, sha256: IMAGE_SHA, url: `${baseUrl}/image.bin` }) }, op()))).code).toBe(status.NOT_FOUND);
  const fw = await createFirmware('0.9');
  expect((await failure(createFirmware('0.9'))).code).toBe(status.ALREADY_EXISTS);
  expect((await failure(unary(firmware, firmware.createFirmware, { firmware: Firmware.fromPartial({ version: '0.8' }) }, viewer()))).code).toBe(status.PERMISSION_DENIED);
  const listed = await unary(firmware, firmware.listFirmware, { deviceTypeId, page: { pageSize: 10, pageToken: '' } }, viewer());
  expect(listed.firmware.map((f) => f.version)).toContain('0.9');
  const other = await h.signing.createTenant();
  expect((await failure(unary(firmware, firmware.getFirmware, { id: fw.id }, { authorization: other.viewer.authorization }))).code).toBe(status.NOT_FOUND);

  await createDevices(['v-1']);
  const create = (c: Partial<Campaign>) => unary(campaigns, campaigns.createCampaign, { campaign: Campaign.fromPartial(c) }, op());
  const v = await failure(create({ firmwareId: fw.id, canaryPercent: 101, failureThresholdPercent: 200, deviceIds: ['v-1', 'v-1'] }));
  expect(v.code).toBe(status.INVALID_ARGUMENT);
  expect(v.fields).toEqual(expect.arrayContaining(['campaign.canary_percent', 'campaign.failure_threshold_percent', 'campaign.device_ids']));
  expect((await failure(create({ deviceIds: ['v-1'] }))).fields).toEqual(['campaign.firmware_id']);
  expect((await failure(create({ firmwareId: fw.id }))).fields).toEqual(['campaign']);
  expect((await failure(create({ firmwareId: fw.id, deviceIds: ['v-1', 'nope'] }))).fields).toEqual(['campaign.device_ids']);
  await unary(firmware, firmware.deleteFirmware, { id: fw.id }, op());
  expect((await failure(unary(firmware, firmware.getFirmware, { id: fw.id }, viewer()))).code).toBe(status.NOT_FOUND);
});

test('a staged campaign: the canary share first, the rest only after every canary device reported; versions reported, counts exact', async () => {
  const ids = Array.from({ length: 10 }, (_, i) => `s-${i + 1}`);
  const creds = await createDevices(ids);
  await Promise.all(ids.map((id) => simulate(creds.get(id)!, {})));
  await online(ids);
  const fw = await createFirmware('2.0');
  const { campaign } = await unary(campaigns, campaigns.createCampaign, { campaign: Campaign.fromPartial({ firmwareId: fw.id, deviceIds: ids, canaryPercent: 20, maxConcurrent: 3, failureThresholdPercent: 50 }) }, op());
  expect(campaign).toMatchObject({ state: CampaignState.CAMPAIGN_STATE_RUNNING, stage: CampaignStage.CAMPAIGN_STAGE_CANARY, version: '2.0', counts: { total: 10 } });
  const progress = await watchToEnd(campaign!.id);
  const last = progress[progress.length - 1];
  expect(last).toMatchObject({ state: CampaignState.CAMPAIGN_STATE_COMPLETED, stage: CampaignStage.CAMPAIGN_STAGE_ROLLOUT, counts: { total: 10, succeeded: 10, failed: 0, queued: 0, sent: 0 } });
  const devices = await campaignDevices(campaign!.id, 3);
  expect(devices.map((d) => d.deviceId)).toEqual(ids);
  const canary = devices.filter((d) => d.stage === CampaignStage.CAMPAIGN_STAGE_CANARY);
  expect(canary.map((d) => d.deviceId)).toEqual(['s-1', 's-2']);
  const canaryDone = Math.max(...canary.map((d) => d.finishTime!.getTime()));
  for (const d of devices.filter((d) => d.stage === CampaignStage.CAMPAIGN_STAGE_ROLLOUT)) expect(d.sentTime!.getTime()).toBeGreaterThanOrEqual(canaryDone);
  expect(devices.every((d) => d.state === JobDeviceState.JOB_DEVICE_STATE_SUCCEEDED)).toBe(true);
  expect(await Promise.all(ids.map(reportedVersion))).toEqual(ids.map(() => '2.0'));
  // A running campaign holds its firmware; an ended one does not.
  await unary(firmware, firmware.deleteFirmware, { id: fw.id }, op());
});

test('a checksum mismatch is reported as failed with its reason', async () => {
  const creds = await createDevices(['c-1']);
  await simulate(creds.get('c-1')!, {});
  await online(['c-1']);
  const fw = await createFirmware('2.1', crypto.createHash('sha256').update('something else').digest('hex'));
  const { campaign } = await unary(campaigns, campaigns.createCampaign, { campaign: Campaign.fromPartial({ firmwareId: fw.id, deviceIds: ['c-1'] }) }, op());
  const progress = await watchToEnd(campaign!.id);
  expect(progress[progress.length - 1]).toMatchObject({ state: CampaignState.CAMPAIGN_STATE_COMPLETED, counts: { total: 1, failed: 1 } });
  const [device] = await campaignDevices(campaign!.id);
  expect(device.state).toBe(JobDeviceState.JOB_DEVICE_STATE_FAILED);
  expect(device.reason).toMatch(/^checksum mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}$/);
  expect(await reportedVersion('c-1')).toBe('1.0');
});

test('the failure threshold stops a campaign: devices not yet started are cancelled and never get the firmware', async () => {
  // 2 canary devices that succeed; in the rollout, 6 of the first 10 fail to install, so at 10 finished the threshold (40 %) is passed.
  const ids = Array.from({ length: 20 }, (_, i) => `a-${i + 1}`);
  const failing = new Set(['a-3', 'a-5', 'a-6', 'a-8', 'a-9', 'a-10']);
  const creds = await createDevices(ids);
  await Promise.all(ids.map((id) => simulate(creds.get(id)!, { installFailShare: failing.has(id) ? 1 : 0 })));
  await online(ids);
  const fw = await createFirmware('3.0');
  const { campaign } = await unary(campaigns, campaigns.createCampaign, { campaign: Campaign.fromPartial({ firmwareId: fw.id, deviceIds: ids, canaryPercent: 10, maxConcurrent: 1, failureThresholdPercent: 40 }) }, op());
  const progress = await watchToEnd(campaign!.id);
  const last = progress[progress.length - 1];
  expect(last.state).toBe(CampaignState.CAMPAIGN_STATE_ABORTED);
  expect(last.reason).toMatch(/^rollout stage aborted: 6 of 10 finished devices failed \(more than 40 %\)$/);
  expect(last.counts).toMatchObject({ total: 20, succeeded: 6, failed: 6, cancelled: 8, queued: 0, sent: 0 });
  const devices = await campaignDevices(campaign!.id);
  const cancelled = devices.filter((d) => d.state === JobDeviceState.JOB_DEVICE_STATE_CANCELLED).map((d) => d.deviceId);
  expect(cancelled).toEqual(ids.slice(12));
  for (const id of cancelled) expect(firmwareDeliveries.has(id)).toBe(false);
  expect(devices.filter((d) => d.state === JobDeviceState.JOB_DEVICE_STATE_FAILED).every((d) => d.reason === 'install failed: flash write error')).toBe(true);
});

test('a restart of the device service mid-campaign loses and repeats nothing', async () => {
  const ids = Array.from({ length: 6 }, (_, i) => `r-${i + 1}`);
  const creds = await createDevices(ids);
  // Installs slow enough that the service stops while the canary devices install.
  await Promise.all(ids.map((id) => simulate(creds.get(id)!, { installMs: 1500 })));
  await online(ids);
  const fw = await createFirmware('4.0');
  const { campaign } = await unary(campaigns, campaigns.createCampaign, { campaign: Campaign.fromPartial({ firmwareId: fw.id, deviceIds: ids, canaryPercent: 50, maxConcurrent: 6 }) }, op());
  await eventually('the canary devices are installing', async () => (await getCampaign(campaign!.id)).counts!.sent === 3 || undefined);
  await h.device.stop();
  replacement = (await startTestService(deviceService, h.env)) as unknown as TestService<never>;
  connectClients(replacement.address);
  const progress = await watchToEnd(campaign!.id);
  expect(progress[progress.length - 1]).toMatchObject({ state: CampaignState.CAMPAIGN_STATE_COMPLETED, counts: { total: 6, succeeded: 6 } });
  // One desired-state change with the firmware per device: no step ran twice.
  expect(ids.map((id) => firmwareDeliveries.get(id)?.size)).toEqual(ids.map(() => 1));
});
