import { peekNatsJwt, verifyNatsJwt } from '@iot-mesh/nats-auth';
import { errors, GrpcCode, MAX_FIRMWARE_CHUNK_BYTES, ServiceError } from '@iot-mesh/runtime';
import type { FirmwareStore } from '../store/firmware-store';
import type { FirmwareRecord } from './firmware';
import type { DeviceRecord } from './model';

/** Size limits of stored images. */
export interface FirmwareImageLimits {
  /** Largest image, bytes. */
  maxImageBytes: number;
  /** All of a tenant's stored images together, bytes. */
  maxTenantBytes: number;
}

/** A range of a stored image about to be streamed. */
export interface ImageDownload {
  firmware: FirmwareRecord;
  offset: bigint;
  length: bigint;
  chunks: AsyncIterable<Uint8Array>;
}

/** What checks a device's credential: its tenant's signing key and the device's current credential. */
export interface DeviceCredentialCheck {
  /** The public key (A…) that signs the tenant's device credentials; undefined when credentials are not configured. */
  signerOf(tenantId: string): string | undefined;
  device(tenantId: string, id: string): Promise<DeviceRecord | undefined>;
}

/**
 * Firmware images the platform stores: chunked upload with size limits and
 * a SHA-256 computed here, and downloads by users of the tenant or by the
 * devices a campaign installs the image on, with their own credential.
 */
export class FirmwareImages {
  constructor(
    private readonly deps: {
      store: FirmwareStore;
      limits: FirmwareImageLimits;
      /** The edge's base URL as devices reach it. */
      downloadBaseUrl: string;
      credentials: DeviceCredentialCheck;
    },
  ) {}

  /** The URL a stored image is downloaded from by devices. */
  downloadUrl(tenantId: string, id: string): string {
    return `${this.deps.downloadBaseUrl.replace(/\/+$/, '')}/v1/tenants/${encodeURIComponent(tenantId)}/firmware/${encodeURIComponent(id)}/image`;
  }

  async upload(tenantId: string, id: string, chunk: { offset: bigint; data: Uint8Array; last: boolean }): Promise<FirmwareRecord> {
    if (!id) throw errors.invalidArgument([{ field: 'id', description: 'is required' }]);
    if (chunk.offset < 0n) throw errors.invalidArgument([{ field: 'offset', description: 'must not be negative' }]);
    if (chunk.data.length > MAX_FIRMWARE_CHUNK_BYTES) throw errors.invalidArgument([{ field: 'data', description: `must be at most ${MAX_FIRMWARE_CHUNK_BYTES} bytes` }]);
    if (chunk.data.length === 0 && !chunk.last) throw errors.invalidArgument([{ field: 'data', description: 'is required unless last is set' }]);
    const { maxImageBytes, maxTenantBytes } = this.deps.limits;
    const stored = await this.deps.store.appendChunk(
      tenantId,
      id,
      chunk,
      (f, tenantBytes) => {
        if (!f.stored) throw errors.failedPrecondition(`firmware ${id} has an external URL; only a firmware created with stored=true takes an upload`);
        if (f.uploadComplete) throw errors.failedPrecondition(`firmware ${id} is already uploaded`);
        const size = BigInt(chunk.data.length);
        // The same chunk again (a retry whose answer was lost): accepted once, not appended twice.
        if (size > 0n && chunk.offset + size === f.uploadedBytes && !chunk.last) return 'duplicate';
        if (chunk.offset !== f.uploadedBytes) throw errors.failedPrecondition(`firmware ${id} has ${f.uploadedBytes} bytes uploaded; the next chunk starts at offset ${f.uploadedBytes}, not ${chunk.offset}`);
        if (f.uploadedBytes + size > BigInt(maxImageBytes)) throw tooLarge(`the image would be larger than ${maxImageBytes} bytes (DEVICE_FIRMWARE_MAX_IMAGE_BYTES)`);
        if (tenantBytes + size > BigInt(maxTenantBytes)) throw tooLarge(`the tenant's stored firmware images would hold more than ${maxTenantBytes} bytes (DEVICE_FIRMWARE_MAX_TENANT_BYTES); delete old firmware first`);
        if (f.sizeBytes > 0n && f.uploadedBytes + size > f.sizeBytes) throw errors.invalidArgument([{ field: 'data', description: `runs past the declared size_bytes ${f.sizeBytes}` }]);
        return 'append';
      },
      (f, image) => {
        const violations = [];
        if (image.sizeBytes === 0n) violations.push({ field: 'data', description: 'the image is empty' });
        if (f.sizeBytes > 0n && image.sizeBytes !== f.sizeBytes) violations.push({ field: 'firmware.size_bytes', description: `declared ${f.sizeBytes}, uploaded ${image.sizeBytes}` });
        if (f.sha256 && image.sha256 !== f.sha256) violations.push({ field: 'firmware.sha256', description: `declared ${f.sha256}, the uploaded image's is ${image.sha256}` });
        if (violations.length > 0) return { restart: errors.invalidArgument(violations.map((v) => ({ ...v, description: `${v.description}; the upload starts over at offset 0` }))) };
        return { url: this.downloadUrl(tenantId, id) };
      },
    );
    if (!stored) throw errors.notFound('firmware', id);
    return stored;
  }

  /** A range of an image for a user of the tenant. */
  async download(tenantId: string, id: string, offset: bigint, length: bigint): Promise<ImageDownload> {
    if (!id) throw errors.invalidArgument([{ field: 'id', description: 'is required' }]);
    const firmware = await this.deps.store.get(tenantId, id);
    if (!firmware) throw errors.notFound('firmware', id);
    return this.range(firmware, offset, length);
  }

  /**
   * A range of an image for the device whose credential `token` is: only a
   * device of the tenant holding its current credential, and only an image a
   * campaign installs on it.
   */
  async downloadForDevice(tenantId: string, id: string, token: string | undefined, offset: bigint, length: bigint): Promise<ImageDownload> {
    // Who is calling comes first, as for every other RPC: a user's token or an API key is refused before the request is looked at.
    if (!token || !looksLikeDeviceCredential(token)) throw errors.unauthenticated('a device credential is required (authorization: Bearer <the device token>)');
    const missing = [!tenantId && 'tenant_id', !id && 'id'].filter((f): f is string => !!f);
    if (missing.length > 0) throw errors.invalidArgument(missing.map((field) => ({ field, description: 'is required' })));
    const deviceId = await this.deviceOf(tenantId, token);
    const firmware = await this.deps.store.get(tenantId, id);
    if (!firmware || !(await this.deps.store.campaignTargets(tenantId, id, deviceId))) throw errors.permissionDenied(`no campaign installs firmware ${id} on device ${deviceId}`);
    return this.range(firmware, offset, length);
  }

  private async deviceOf(tenantId: string, token: string): Promise<string> {
    const signer = this.deps.credentials.signerOf(tenantId);
    const claims = signer ? verifyNatsJwt(token, signer, 'A') : undefined;
    const prefix = `${tenantId}/`;
    if (typeof claims?.name !== 'string' || !claims.name.startsWith(prefix) || typeof claims.sub !== 'string') throw errors.unauthenticated('not a valid device credential of this tenant');
    const device = await this.deps.credentials.device(tenantId, claims.name.slice(prefix.length));
    // Rotated or revoked credentials are refused here as at the NATS server.
    if (!device || device.credentialState !== 'active' || device.credentialKey !== claims.sub) throw errors.unauthenticated('the device credential was rotated or revoked');
    return device.id;
  }

  private range(firmware: FirmwareRecord, offset: bigint, length: bigint): ImageDownload {
    if (!firmware.stored) throw errors.failedPrecondition(`firmware ${firmware.id} is not stored by the platform; download it from ${firmware.url}`);
    if (!firmware.uploadComplete) throw errors.failedPrecondition(`firmware ${firmware.id} is still being uploaded`);
    const size = firmware.sizeBytes;
    if (offset < 0n || length < 0n) throw errors.invalidArgument([{ field: offset < 0n ? 'offset' : 'length', description: 'must not be negative' }]);
    if (offset > 0n && offset >= size) throw new ServiceError(GrpcCode.OUT_OF_RANGE, `offset ${offset} is past the image's ${size} bytes`);
    const rest = size - offset;
    const take = length === 0n || length > rest ? rest : length;
    return { firmware, offset, length: take, chunks: this.deps.store.readImage(firmware.tenantId, firmware.id, offset, take) };
  }
}

/** True when `token` reads as a device credential (a NATS user JWT named `<tenant>/<device>`), whoever signed it: a user access token does not. */
function looksLikeDeviceCredential(token: string): boolean {
  try {
    const claims = peekNatsJwt(token) as { name?: unknown; nats?: { type?: unknown } };
    return claims?.nats?.type === 'user' && typeof claims.name === 'string' && claims.name.includes('/');
  } catch {
    return false;
  }
}

/** RESOURCE_EXHAUSTED for a size limit: a quota, so no RetryInfo (waiting does not help). */
function tooLarge(message: string): ServiceError {
  return new ServiceError(GrpcCode.RESOURCE_EXHAUSTED, message);
}
