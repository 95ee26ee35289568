import { ClientReadableStream, Metadata, status } from '@grpc/grpc-js';
import crypto from 'node:crypto';
import { insecureClient, serverStream, unary } from '@iot-mesh/runtime';
import { Device, DeviceCredential } from '../../../gen/ts/iot/device/v1/device';
import { HttpBody } from '../../../gen/ts/google/api/httpbody';
import { Campaign, CampaignServiceClient, Firmware, FirmwareImageChunk, FirmwareServiceClient } from '../../../gen/ts/iot/device/v1/firmware';
import { RotateCredentialRequest } from '../../../gen/ts/iot/device/v1/credential';
import { TestTenant } from '../../../testing/signing';
import { createDeviceType, DeviceHarness, failure, startDeviceHarness } from './harness';

jest.setTimeout(120_000);

const MAX_IMAGE = 3 * 1024 * 1024;
const MAX_TENANT = 5 * 1024 * 1024;
const MIB = 1024 * 1024;

let h: DeviceHarness;
let t: TestTenant;
let firmware: FirmwareServiceClient;
let campaigns: CampaignServiceClient;
let deviceTypeId: string;

beforeAll(async () => {
  h = await startDeviceHarness({
    env: { DEVICE_CREDENTIAL_DEFAULT_KIND: 'nats', DEVICE_FIRMWARE_MAX_IMAGE_BYTES: String(MAX_IMAGE), DEVICE_FIRMWARE_MAX_TENANT_BYTES: String(MAX_TENANT), DEVICE_FIRMWARE_DOWNLOAD_URL: 'https://edge.example:8443/' },
  });
  t = await h.signing.createTenant();
  firmware = insecureClient(FirmwareServiceClient, h.device.address);
  campaigns = insecureClient(CampaignServiceClient, h.device.address);
  deviceTypeId = (await createDeviceType(h.device.address, t.operator.authorization, { name: 'meter' })).id;
});
afterAll(async () => {
  firmware?.close();
  campaigns?.close();
  await h?.stop();
});

const op = () => ({ authorization: t.operator.authorization });
const viewer = () => ({ authorization: t.viewer.authorization });
const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

async function createStored(version: string, declared: Partial<Firmware> = {}): Promise<Firmware> {
  return (await unary(firmware, firmware.createFirmware, { firmware: Firmware.fromPartial({ version, deviceTypeId, stored: true, ...declared }) }, op())).firmware!;
}

function chunk(id: string, offset: number, data: Buffer, last = false): Promise<Firmware> {
  return unary(firmware, firmware.uploadFirmwareChunk, { id, offset: BigInt(offset), data, last }, op()).then((r) => r.firmware!);
}

/** Uploads `image` in 1 MiB chunks, the last one marked. */
async function upload(id: string, image: Buffer): Promise<Firmware> {
  let last: Firmware | undefined;
  for (let offset = 0; offset < image.length; offset += MIB) last = await chunk(id, offset, image.subarray(offset, offset + MIB), offset + MIB >= image.length);
  return last!;
}

async function collect(stream: AsyncIterable<{ chunk?: FirmwareImageChunk }>): Promise<{ data: Buffer; head: FirmwareImageChunk }> {
  const parts: Buffer[] = [];
  let head: FirmwareImageChunk | undefined;
  for await (const m of stream) {
    head ??= m.chunk!;
    parts.push(Buffer.from(m.chunk!.data));
  }
  return { data: Buffer.concat(parts), head: head! };
}

async function createDevice(id: string): Promise<DeviceCredential> {
  const response = await unary(h.clients.devices, h.clients.devices.batchCreateDevices, { devices: [Device.fromPartial({ id, name: id, deviceTypeId })], issueCredentials: true }, op());
  return response.credentials[0];
}

test('a stored image is uploaded in chunks, measured by the platform and downloaded whole or by range', async () => {
  const image = crypto.randomBytes(2 * MIB + 12_345);
  const fw = await createStored('1.0', { sha256: sha(image) });
  expect(fw).toMatchObject({ stored: true, uploadComplete: false, url: '' });
  // An incomplete image cannot be rolled out or downloaded.
  const first = await chunk(fw.id, 0, image.subarray(0, MIB));
  expect(first.uploadedBytes).toBe(BigInt(MIB));
  // The same chunk again (its answer was lost) is accepted once; a gap is refused with the offset to use.
  expect((await chunk(fw.id, 0, image.subarray(0, MIB))).uploadedBytes).toBe(BigInt(MIB));
  expect((await failure(chunk(fw.id, 2 * MIB, image.subarray(2 * MIB)))).code).toBe(status.FAILED_PRECONDITION);
  expect((await failure(unary(campaigns, campaigns.createCampaign, { campaign: Campaign.fromPartial({ firmwareId: fw.id, deviceIds: ['x'] }) }, op()))).code).toBe(status.FAILED_PRECONDITION);
  expect((await failure(collect(serverStream(firmware, firmware.downloadFirmware, { id: fw.id, offset: 0n, length: 0n }, viewer())))).code).toBe(status.FAILED_PRECONDITION);
  // Viewers may not upload.
  expect((await failure(unary(firmware, firmware.uploadFirmwareChunk, { id: fw.id, offset: BigInt(MIB), data: image.subarray(MIB, 2 * MIB), last: false }, viewer()))).code).toBe(status.PERMISSION_DENIED);

  await chunk(fw.id, MIB, image.subarray(MIB, 2 * MIB));
  const done = await chunk(fw.id, 2 * MIB, image.subarray(2 * MIB), true);
  expect(done).toMatchObject({ uploadComplete: true, sizeBytes: BigInt(image.length), sha256: sha(image), url: `https://edge.example:8443/v1/tenants/${t.tenantId}/firmware/${fw.id}/image` });
  expect((await failure(chunk(fw.id, image.length, Buffer.from('x'), true))).code).toBe(status.FAILED_PRECONDITION);

  const whole = await collect(serverStream(firmware, firmware.downloadFirmware, { id: fw.id, offset: 0n, length: 0n }, viewer()));
  expect(whole.data.equals(image)).toBe(true);
  expect(whole.head).toMatchObject({ sizeBytes: BigInt(image.length), sha256: sha(image), offset: 0n, length: BigInt(image.length) });
  // A range across a chunk boundary, and one running past the end (cut at the end).
  const range = await collect(serverStream(firmware, firmware.downloadFirmware, { id: fw.id, offset: BigInt(MIB - 10), length: 20n }, viewer()));
  expect(range.data.equals(image.subarray(MIB - 10, MIB + 10))).toBe(true);
  const tail = await collect(serverStream(firmware, firmware.downloadFirmware, { id: fw.id, offset: BigInt(image.length - 5), length: 100n }, viewer()));
  expect(tail.data.equals(image.subarray(image.length - 5))).toBe(true);
  expect((await failure(collect(serverStream(firmware, firmware.downloadFirmware, { id: fw.id, offset: BigInt(image.length), length: 0n }, viewer())))).code).toBe(status.OUT_OF_RANGE);
  // Another tenant does not see it.
  const other = await h.signing.createTenant();
  expect((await failure(collect(serverStream(firmware, firmware.downloadFirmware, { id: fw.id, offset: 0n, length: 0n }, { authorization: other.viewer.authorization })))).code).toBe(status.NOT_FOUND);
});

test('a declared digest or size that the image does not match is refused and the upload starts over', async () => {
  const image = crypto.randomBytes(1000);
  const fw = await createStored('2.0', { sha256: sha(Buffer.from('something else')) });
  const wrong = await failure(chunk(fw.id, 0, image, true));
  expect(wrong).toEqual({ code: status.INVALID_ARGUMENT, fields: ['firmware.sha256'] });
  expect((await unary(firmware, firmware.getFirmware, { id: fw.id }, viewer())).firmware).toMatchObject({ uploadedBytes: 0n, uploadComplete: false });
  const sized = await createStored('2.1', { sizeBytes: 10n });
  expect((await failure(chunk(sized.id, 0, image))).fields).toEqual(['data']);
  // Without a declared digest the platform's own is kept.
  const plain = await createStored('2.2');
  expect((await chunk(plain.id, 0, image, true)).sha256).toBe(sha(image));
  // External-URL firmware takes no upload; a stored one takes no URL.
  const external = (await unary(firmware, firmware.createFirmware, { firmware: Firmware.fromPartial({ version: '2.3', deviceTypeId, sizeBytes: 1n, sha256: sha(image), url: 'https://x.example/fw.bin' }) }, op())).firmware!;
  expect((await failure(chunk(external.id, 0, image, true))).code).toBe(status.FAILED_PRECONDITION);
  expect((await failure(createStored('2.4', { url: 'https://x.example/fw.bin' }))).fields).toEqual(['firmware.url']);
});

test('the per-image and per-tenant size limits answer RESOURCE_EXHAUSTED', async () => {
  const other = await h.signing.createTenant();
  const auth = { authorization: other.operator.authorization };
  const typeId = (await createDeviceType(h.device.address, auth.authorization, { name: 'big' })).id;
  const create = async (version: string) => (await unary(firmware, firmware.createFirmware, { firmware: Firmware.fromPartial({ version, deviceTypeId: typeId, stored: true }) }, auth)).firmware!;
  const put = (id: string, offset: number, last = false) => unary(firmware, firmware.uploadFirmwareChunk, { id, offset: BigInt(offset), data: crypto.randomBytes(MIB), last }, auth);

  const big = await create('1');
  for (let i = 0; i < 3; i++) await put(big.id, i * MIB);
  const tooBig = await failure(put(big.id, 3 * MIB));
  expect(tooBig.code).toBe(status.RESOURCE_EXHAUSTED);
  await unary(firmware, firmware.uploadFirmwareChunk, { id: big.id, offset: BigInt(3 * MIB), data: Buffer.alloc(0), last: true }, auth);
  // 3 MiB held; a second image may add 2 MiB, not a third.
  const second = await create('2');
  await put(second.id, 0);
  await put(second.id, MIB);
  let refused: { code: number } | undefined;
  try {
    await put(second.id, 2 * MIB);
  } catch (err) {
    refused = err as { code: number };
  }
  expect(refused?.code).toBe(status.RESOURCE_EXHAUSTED);
  // Deleting an image frees its share.
  await unary(firmware, firmware.deleteFirmware, { id: big.id }, auth);
  await put(second.id, 2 * MIB, true);
});

test('a device downloads only an image a campaign installs on it, with its own current credential', async () => {
  const image = crypto.randomBytes(300_000);
  const fw = await createStored('3.0');
  await upload(fw.id, image);
  const target = await createDevice('fw-target');
  const bystander = await createDevice('fw-bystander');
  await unary(campaigns, campaigns.createCampaign, { campaign: Campaign.fromPartial({ firmwareId: fw.id, deviceIds: ['fw-target'] }) }, op());
  const download = (token: string, tenantId = t.tenantId, offset = 0n) =>
    collect(serverStream(firmware, firmware.downloadDeviceFirmware, { tenantId, id: fw.id, offset, length: 0n }, { authorization: `Bearer ${token}` }));

  const got = await download(target.token);
  expect(got.data.equals(image)).toBe(true);
  expect(got.head.sha256).toBe(sha(image));
  expect((await download(target.token, t.tenantId, 299_990n)).data.equals(image.subarray(299_990))).toBe(true);
  expect((await failure(download(bystander.token))).code).toBe(status.PERMISSION_DENIED);
  // A token of another tenant's account, a forged one and none at all.
  const other = await h.signing.createTenant();
  expect((await failure(download(target.token, other.tenantId))).code).toBe(status.UNAUTHENTICATED);
  const [header, body] = target.token.split('.');
  expect((await failure(download(`${header}.${body}.${Buffer.alloc(64).toString('base64url')}`))).code).toBe(status.UNAUTHENTICATED);
  expect((await failure(collect(serverStream(firmware, firmware.downloadDeviceFirmware, { tenantId: t.tenantId, id: fw.id, offset: 0n, length: 0n }, {})))).code).toBe(status.UNAUTHENTICATED);
  // A user's token or an API key is not a device credential, and is refused before the request is looked at.
  const asUser = (request: { tenantId: string; id: string }, authorization: string) =>
    collect(serverStream(firmware, firmware.downloadDeviceFirmware, { ...request, offset: 0n, length: 0n }, { authorization }));
  expect((await failure(download(t.operator.authorization.replace(/^Bearer /, '')))).code).toBe(status.UNAUTHENTICATED);
  expect((await failure(asUser({ tenantId: '', id: '' }, t.admin.authorization))).code).toBe(status.UNAUTHENTICATED);
  expect((await failure(asUser({ tenantId: t.tenantId, id: fw.id }, (await t.createApiKey('admin', 'fw-key')).authorization))).code).toBe(status.UNAUTHENTICATED);
  // A device's own credential with the request incomplete is told what is missing.
  expect((await failure(asUser({ tenantId: t.tenantId, id: '' }, `Bearer ${target.token}`))).code).toBe(status.INVALID_ARGUMENT);
  // After a rotation the old credential is refused, the new one works.
  const rotated = (await unary(h.clients.credentials, h.clients.credentials.rotateCredential, RotateCredentialRequest.fromPartial({ deviceId: 'fw-target' }), op())).credential!;
  expect((await failure(download(target.token))).code).toBe(status.UNAUTHENTICATED);
  expect((await download(rotated.token)).data.equals(image)).toBe(true);
});

/** A raw image stream's bytes, every message's content type checked (Envoy's transcoder takes the first one's), and its response headers. */
async function collectRaw(stream: ClientReadableStream<HttpBody>): Promise<Buffer & { headers?: Record<string, unknown> }> {
  let headers: Record<string, unknown> | undefined;
  stream.once('metadata', (metadata: Metadata) => (headers = metadata.getMap()));
  const parts: Buffer[] = [];
  for await (const m of stream as AsyncIterable<HttpBody>) {
    expect(m.contentType).toBe('application/octet-stream');
    parts.push(Buffer.from(m.data));
  }
  return Object.assign(Buffer.concat(parts), { headers });
}

test('the REST image RPCs (google.api.HttpBody, raw through Envoy) stream the same bytes with the same access and refusals', async () => {
  const image = crypto.randomBytes(MIB + 4321);
  const fw = await createStored('4.0');
  await upload(fw.id, image);
  const raw = (offset: bigint, length: bigint, metadata: Record<string, string> = viewer()) => collectRaw(serverStream(firmware, firmware.getFirmwareImage, { id: fw.id, offset, length }, metadata));
  const whole = await raw(0n, 0n);
  expect(whole.equals(image)).toBe(true);
  // What Envoy passes on as the HTTP response's headers: the whole image's digest and size, and the part sent.
  const digest = { 'x-checksum-sha256': sha(image), 'repr-digest': `sha-256=:${crypto.createHash('sha256').update(image).digest('base64')}:`, 'x-firmware-size-bytes': String(image.length) };
  expect(whole.headers).toMatchObject({ ...digest, 'x-firmware-offset': '0', 'x-firmware-length': String(image.length) });
  const part = await raw(BigInt(MIB - 3), 6n);
  expect(part.equals(image.subarray(MIB - 3, MIB + 3))).toBe(true);
  expect(part.headers).toMatchObject({ ...digest, 'x-firmware-offset': String(MIB - 3), 'x-firmware-length': '6' });
  expect((await failure(raw(BigInt(image.length), 0n))).code).toBe(status.OUT_OF_RANGE);
  expect((await failure(raw(0n, 0n, { authorization: (await h.signing.createTenant()).viewer.authorization }))).code).toBe(status.NOT_FOUND);
  expect((await failure(raw(0n, 0n, {}))).code).toBe(status.UNAUTHENTICATED);

  const target = await createDevice('fw-raw-target');
  const bystander = await createDevice('fw-raw-bystander');
  await unary(campaigns, campaigns.createCampaign, { campaign: Campaign.fromPartial({ firmwareId: fw.id, deviceIds: ['fw-raw-target'] }) }, op());
  const device = (authorization: string, offset = 0n) => collectRaw(serverStream(firmware, firmware.getDeviceFirmwareImage, { tenantId: t.tenantId, id: fw.id, offset, length: 0n }, { authorization }));
  const downloaded = await device(`Bearer ${target.token}`);
  expect(downloaded.equals(image)).toBe(true);
  expect(downloaded.headers).toMatchObject({ 'x-checksum-sha256': sha(image) });
  expect((await device(`Bearer ${target.token}`, BigInt(MIB))).equals(image.subarray(MIB))).toBe(true);
  expect((await failure(device(`Bearer ${bystander.token}`))).code).toBe(status.PERMISSION_DENIED);
  // A user's token is not a device credential.
  expect((await failure(device(t.admin.authorization))).code).toBe(status.UNAUTHENTICATED);
});
