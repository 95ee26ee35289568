import { CallContext, callerPrincipal, callerTenant, decodePageToken, defineService, encodePageToken, errors, pageSize, ServiceRegistration } from '@iot-mesh/runtime';
import { HttpBody } from '../../../../gen/ts/google/api/httpbody';
import { Campaign, CampaignDevice, CampaignServiceService, CampaignStage, CampaignState, Firmware, FirmwareImageChunk, FirmwareServiceService } from '../../../../gen/ts/iot/device/v1/firmware';
import { CampaignDeviceRecord, CampaignRecord, Campaigns, CampaignStage as DomainStage, CampaignState as DomainState, Firmware as FirmwareDomain, FirmwareRecord } from '../domain/firmware';
import { FirmwareImages, ImageDownload } from '../domain/firmware-images';
import { DEVICE_STATES } from './jobs';
import { decodeSeqToken, encodeSeqToken } from './devices';

const CAMPAIGN_STATES: Record<DomainState, CampaignState> = {
  running: CampaignState.CAMPAIGN_STATE_RUNNING,
  completed: CampaignState.CAMPAIGN_STATE_COMPLETED,
  aborted: CampaignState.CAMPAIGN_STATE_ABORTED,
  cancelled: CampaignState.CAMPAIGN_STATE_CANCELLED,
};

const STAGES: Record<DomainStage, CampaignStage> = {
  canary: CampaignStage.CAMPAIGN_STAGE_CANARY,
  rollout: CampaignStage.CAMPAIGN_STAGE_ROLLOUT,
};

function toFirmwareMessage(f: FirmwareRecord): Firmware {
  return {
    id: f.id,
    tenantId: f.tenantId,
    version: f.version,
    deviceTypeId: f.deviceTypeId,
    sizeBytes: f.sizeBytes,
    sha256: f.sha256,
    url: f.url,
    description: f.description,
    createTime: f.createTime,
    stored: f.stored,
    uploadedBytes: f.uploadedBytes,
    uploadComplete: f.uploadComplete,
  };
}

/** Streams a download's chunks, the first carrying the image's size and digest and the range. */
async function sendImage(download: ImageDownload, send: (message: { chunk: FirmwareImageChunk }) => Promise<void>): Promise<void> {
  const { firmware, offset, length } = download;
  const head = { sizeBytes: firmware.sizeBytes, sha256: firmware.sha256, offset, length };
  let first = true;
  for await (const bytes of download.chunks) {
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    await send({ chunk: first ? { data, ...head } : { data, sizeBytes: 0n, sha256: '', offset: 0n, length: 0n } });
    first = false;
  }
  if (first) await send({ chunk: { data: Buffer.alloc(0), ...head } });
}

/** The content type of a raw image (google.api.HttpBody): what Envoy's transcoder and the Node gateway answer a REST download with. */
const IMAGE_CONTENT_TYPE = 'application/octet-stream';

/**
 * Streams a download as raw bytes (google.api.HttpBody), the content type in
 * every message (Envoy takes the first one's), after response headers saying
 * what the chunked RPCs' first message says: the whole image's SHA-256 (as
 * the Node gateway words it) and size, and the part that follows.
 */
async function sendRawImage(download: ImageDownload, ctx: CallContext, send: (message: HttpBody) => Promise<void>): Promise<void> {
  const { firmware, offset, length } = download;
  ctx.sendHeaders?.({
    'x-checksum-sha256': firmware.sha256,
    'repr-digest': `sha-256=:${Buffer.from(firmware.sha256, 'hex').toString('base64')}:`,
    'x-firmware-size-bytes': String(firmware.sizeBytes),
    'x-firmware-offset': String(offset),
    'x-firmware-length': String(length),
  });
  let first = true;
  for await (const bytes of download.chunks) {
    await send({ contentType: IMAGE_CONTENT_TYPE, data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), extensions: [] });
    first = false;
  }
  if (first) await send({ contentType: IMAGE_CONTENT_TYPE, data: Buffer.alloc(0), extensions: [] });
}

/** A campaign record as the `iot.device.v1.Campaign` message (device ids are listed by ListCampaignDevices). */
function toCampaignMessage(c: CampaignRecord): Campaign {
  return {
    id: c.id,
    tenantId: c.tenantId,
    firmwareId: c.firmwareId,
    description: c.description,
    groupId: c.groupId,
    deviceIds: [],
    canaryPercent: c.canaryPercent,
    maxConcurrent: c.maxConcurrent,
    failureThresholdPercent: c.failureThresholdPercent,
    expireTime: c.expireTime,
    state: CAMPAIGN_STATES[c.state],
    stage: STAGES[c.stage],
    reason: c.reason,
    counts: c.counts,
    canaryJobId: c.canaryJobId ?? '',
    rolloutJobId: c.rolloutStarted ? c.rolloutJobId : '',
    version: c.version,
    actorId: c.actorId,
    createTime: c.createTime,
    updateTime: c.updateTime,
  };
}

function toCampaignDeviceMessage(d: CampaignDeviceRecord): CampaignDevice {
  return { deviceId: d.deviceId, stage: STAGES[d.stage], state: DEVICE_STATES[d.state], reason: d.reason, sentTime: d.sentTime, finishTime: d.finishTime };
}

/** Campaign devices' positions: a job row's seq, or 'r<n>' among the rollout devices not yet in a job. */
function decodeCampaignToken(token: string | undefined): string | undefined {
  const cursor = decodePageToken(token || undefined);
  if (!cursor) return undefined;
  if (cursor.length !== 1 || typeof cursor[0] !== 'string' || !/^r?\d+$/.test(cursor[0])) throw errors.invalidArgument([{ field: 'page.page_token', description: 'is not a token this server issued' }]);
  return cursor[0];
}

/** `iot.device.v1.FirmwareService`: the tenant's firmware artefacts. */
export function firmwareApi(firmware: FirmwareDomain, images: FirmwareImages): ServiceRegistration {
  return defineService(FirmwareServiceService, {
    async createFirmware(request, ctx) {
      const f = request.firmware;
      if (!f) throw errors.invalidArgument([{ field: 'firmware', description: 'is required' }]);
      const created = await firmware.create(callerTenant(ctx), { version: f.version, deviceTypeId: f.deviceTypeId, sizeBytes: f.sizeBytes, sha256: f.sha256, url: f.url, description: f.description, stored: f.stored });
      return { firmware: toFirmwareMessage(created) };
    },
    async getFirmware(request, ctx) {
      return { firmware: toFirmwareMessage(await firmware.get(callerTenant(ctx), request.id)) };
    },
    async listFirmware(request, ctx) {
      const page = await firmware.list(callerTenant(ctx), request.deviceTypeId, pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { firmware: page.firmware.map(toFirmwareMessage), page: { nextPageToken: encodeSeqToken(page.nextBefore) } };
    },
    async deleteFirmware(request, ctx) {
      await firmware.delete(callerTenant(ctx), request.id);
      return {};
    },
    async uploadFirmwareChunk(request, ctx) {
      return { firmware: toFirmwareMessage(await images.upload(callerTenant(ctx), request.id, { offset: request.offset, data: request.data, last: request.last })) };
    },
    async downloadFirmware(request, ctx, send) {
      await sendImage(await images.download(callerTenant(ctx), request.id, request.offset, request.length), send);
    },
    async downloadDeviceFirmware(request, ctx, send) {
      await sendImage(await images.downloadForDevice(request.tenantId, request.id, ctx.deviceCredential, request.offset, request.length), send);
    },
    async getFirmwareImage(request, ctx, send) {
      await sendRawImage(await images.download(callerTenant(ctx), request.id, request.offset, request.length), ctx, send);
    },
    async getDeviceFirmwareImage(request, ctx, send) {
      await sendRawImage(await images.downloadForDevice(request.tenantId, request.id, ctx.deviceCredential, request.offset, request.length), ctx, send);
    },
  });
}

/** `iot.device.v1.CampaignService`: staged firmware roll-outs and their progress. */
export function campaignApi(campaigns: Campaigns): ServiceRegistration {
  return defineService(CampaignServiceService, {
    async createCampaign(request, ctx) {
      const principal = callerPrincipal(ctx);
      const c = request.campaign;
      if (!c) throw errors.invalidArgument([{ field: 'campaign', description: 'is required' }]);
      const created = await campaigns.create(principal.tenantId, {
        firmwareId: c.firmwareId,
        description: c.description,
        groupId: c.groupId,
        deviceIds: c.deviceIds,
        canaryPercent: c.canaryPercent,
        maxConcurrent: c.maxConcurrent,
        failureThresholdPercent: c.failureThresholdPercent,
        expireTime: c.expireTime,
        actorId: principal.id,
      });
      return { campaign: toCampaignMessage(created) };
    },
    async getCampaign(request, ctx) {
      return { campaign: toCampaignMessage(await campaigns.get(callerTenant(ctx), request.id)) };
    },
    async listCampaigns(request, ctx) {
      const page = await campaigns.list(callerTenant(ctx), pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { campaigns: page.campaigns.map(toCampaignMessage), page: { nextPageToken: encodeSeqToken(page.nextBefore) } };
    },
    async listCampaignDevices(request, ctx) {
      const page = await campaigns.devices(callerTenant(ctx), request.id, pageSize(request.page?.pageSize), decodeCampaignToken(request.page?.pageToken));
      return { devices: page.devices.map(toCampaignDeviceMessage), page: { nextPageToken: page.nextAfter === undefined ? '' : encodePageToken([page.nextAfter]) } };
    },
    async cancelCampaign(request, ctx) {
      const principal = callerPrincipal(ctx);
      return { campaign: toCampaignMessage(await campaigns.cancel(principal.tenantId, request.id, principal.id)) };
    },
    async watchCampaign(request, ctx, send) {
      await campaigns.watch(callerTenant(ctx), request.id, (c) => send({ campaign: toCampaignMessage(c) }), ctx.signal);
    },
  });
}
