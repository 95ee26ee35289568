import crypto from 'node:crypto';
import { errors, Logger, PG_ERROR, Violations } from '@iot-mesh/runtime';
import type { FirmwareStore } from '../store/firmware-store';
import type { JobStore } from '../store/job-store';
import type { DeviceTypes } from './device-types';
import { DEFAULT_JOB_TTL_MS, DEFAULT_MAX_IN_FLIGHT, JobCounts, JobDeviceState, Jobs, JobSpec, MAX_JOB_DEVICES, watchProgress } from './jobs';
import type { JsonObject } from './model';
import type { Twins } from './twins';

/** A firmware artefact as CreateFirmware stores it. */
export interface FirmwareSpec {
  tenantId: string;
  id: string;
  version: string;
  deviceTypeId: string;
  sizeBytes: bigint;
  sha256: string;
  url: string;
  description: string;
  /** The platform stores the image (uploaded in chunks); `url` is set once it is complete. */
  stored: boolean;
}

/** A stored firmware artefact. */
export interface FirmwareRecord extends FirmwareSpec {
  seq: string;
  /** Bytes of a stored image uploaded so far. */
  uploadedBytes: bigint;
  /** False while a stored image is still being uploaded. */
  uploadComplete: boolean;
  createTime: Date;
}

export type CampaignState = 'running' | 'completed' | 'aborted' | 'cancelled';
export type CampaignStage = 'canary' | 'rollout';

/** A campaign as it is stored when created. */
export interface CampaignSpec {
  tenantId: string;
  id: string;
  firmwareId: string;
  description: string;
  groupId: string;
  canaryPercent: number;
  maxConcurrent: number;
  failureThresholdPercent: number;
  expireTime: Date;
  stage: CampaignStage;
  /** Absent without a canary stage. */
  canaryJobId?: string;
  /** Chosen at creation; the job exists once the rollout stage started. */
  rolloutJobId: string;
  rolloutDeviceIds: string[];
  rolloutStarted: boolean;
  actorId: string;
}

/** A stored campaign and its progress. */
export interface CampaignRecord extends CampaignSpec {
  seq: string;
  version: string;
  url: string;
  sha256: string;
  state: CampaignState;
  reason: string;
  counts: JobCounts;
  createTime: Date;
  updateTime: Date;
}

/** One device's state in a campaign. */
export interface CampaignDeviceRecord {
  deviceId: string;
  seq: string;
  stage: CampaignStage;
  state: JobDeviceState;
  reason: string;
  sentTime?: Date;
  finishTime?: Date;
}

/** What CreateCampaign asks for. */
export interface CampaignInput {
  firmwareId: string;
  description: string;
  groupId: string;
  deviceIds: string[];
  canaryPercent: number;
  maxConcurrent: number;
  failureThresholdPercent: number;
  expireTime?: Date;
  actorId: string;
}

const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** The firmware part of a device's reported state: what it runs and how its last install went. */
export interface ReportedFirmware {
  /** The version it runs. */
  version?: string;
  /** 'downloading', 'installing', 'succeeded' or 'failed'. */
  status?: string;
  /** Why it failed. */
  reason?: string;
  /** The version it tried to install (when it failed, `version` is still the old one). */
  target_version?: string;
}

/** Firmware artefacts: versions of a device type's firmware, their checksum and where devices download them. */
export class Firmware {
  constructor(
    private readonly store: FirmwareStore,
    private readonly types: Pick<DeviceTypes, 'get'>,
  ) {}

  async create(tenantId: string, input: Omit<FirmwareSpec, 'tenantId' | 'id'>): Promise<FirmwareRecord> {
    const v = new Violations();
    if (v.required(input.version, 'firmware.version')) v.matches(input.version, VERSION, 'firmware.version', "must be 1-64 characters: letters, digits, '.', '_', '+', '-'");
    v.required(input.deviceTypeId, 'firmware.device_type_id');
    if (input.stored) {
      // The platform measures the image; declared values are checked against it.
      v.check(input.sizeBytes >= 0n, 'firmware.size_bytes', 'must not be negative');
      v.check(!input.sha256 || SHA256.test(input.sha256), 'firmware.sha256', 'must be empty or 64 lower-case hex characters');
      v.check(!input.url, 'firmware.url', 'must be empty for a stored firmware (the platform sets it)');
    } else {
      v.check(input.sizeBytes > 0n, 'firmware.size_bytes', 'must be more than 0');
      v.check(SHA256.test(input.sha256), 'firmware.sha256', 'must be 64 lower-case hex characters');
      v.check(isHttpUrl(input.url), 'firmware.url', 'must be an http or https URL (or set stored to upload the image)');
    }
    v.maxLength(input.url, 2000, 'firmware.url');
    v.maxLength(input.description, 2000, 'firmware.description');
    v.throwIfAny();
    const type = await this.types.get(tenantId, input.deviceTypeId, 'firmware.device_type_id');
    const stored = await this.store.insert({ ...input, deviceTypeId: type.id, tenantId, id: crypto.randomUUID() });
    if (!stored) throw errors.alreadyExists(`device type ${type.name} already has firmware ${input.version}`);
    return stored;
  }

  async get(tenantId: string, id: string, field = 'id'): Promise<FirmwareRecord> {
    if (!id) throw errors.invalidArgument([{ field, description: 'is required' }]);
    const found = await this.store.get(tenantId, id);
    if (!found) throw errors.notFound('firmware', id);
    return found;
  }

  async list(tenantId: string, deviceTypeId: string, size: number, before: string | undefined): Promise<{ firmware: FirmwareRecord[]; nextBefore?: string }> {
    const rows = await this.store.list(tenantId, deviceTypeId, before, size + 1);
    const firmware = rows.slice(0, size);
    return { firmware, nextBefore: rows.length > size ? firmware[firmware.length - 1].seq : undefined };
  }

  async delete(tenantId: string, id: string): Promise<void> {
    if (!id) throw errors.invalidArgument([{ field: 'id', description: 'is required' }]);
    const outcome = await this.store.delete(tenantId, id);
    if (outcome === 'not_found') throw errors.notFound('firmware', id);
    if (outcome === 'in_use') throw errors.failedPrecondition(`firmware ${id} is being installed by a running campaign`);
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** What campaigns are built from. */
export interface CampaignDeps {
  store: FirmwareStore;
  jobStore: JobStore;
  firmware: Firmware;
  jobs: Pick<Jobs, 'targets' | 'cancel'>;
  /** Sends a device its desired state again. */
  twins: Pick<Twins, 'connected'>;
  log: Logger;
  /** Told when a stage's job was created or a device's step finished (to run the job engine at once). */
  onJobsChanged?: () => void;
}

/**
 * Firmware campaigns on the job engine: each stage is a desired-state job
 * setting `firmware: {version, url, sha256}` whose device steps finish when
 * the device reports (see {@link JobStore.finishReported}); the job engine's
 * concurrency limit and abort threshold are the stage's. {@link advance}
 * starts the rollout stage once the canary stage completed and ends the
 * campaign with its last stage.
 */
export class Campaigns {
  private timer?: NodeJS.Timeout;
  private passing?: Promise<void>;

  constructor(private readonly deps: CampaignDeps) {}

  /**
   * Advances the running campaigns every `pollMs` (and on {@link wake}).
   * First it sends every device with an install under way its desired state
   * again: state reports are core NATS messages, so one sent while no replica
   * listened is gone, and the device answers a repeated desired state with
   * its report.
   */
  start(pollMs = 1000): void {
    this.timer = setInterval(() => this.wake(), pollMs);
    this.passing = this.resendAwaiting()
      .catch((err: Error) => this.deps.log.warn({ err: err.message }, 'resending desired firmware failed'))
      .finally(() => (this.passing = undefined));
  }

  private async resendAwaiting(): Promise<void> {
    const awaiting = await this.deps.store.awaitingDevices();
    for (let i = 0; i < awaiting.length; i += 64) {
      await this.deps.twins.connected(awaiting.slice(i, i + 64));
    }
  }

  /** Runs a pass of {@link advance} unless one is under way. */
  wake(): void {
    if (!this.timer || this.passing) return;
    this.passing = this.advance()
      .catch((err: Error) => this.deps.log.warn({ err: err.message }, 'campaign pass failed'))
      .finally(() => (this.passing = undefined));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.passing;
  }

  async create(tenantId: string, input: CampaignInput): Promise<CampaignRecord> {
    const v = new Violations();
    v.required(input.firmwareId, 'campaign.firmware_id');
    v.check((input.groupId === '') !== (input.deviceIds.length === 0), 'campaign', 'must name exactly one of group_id and device_ids');
    v.check(input.deviceIds.length <= MAX_JOB_DEVICES, 'campaign.device_ids', `must name at most ${MAX_JOB_DEVICES} devices`);
    v.check(new Set(input.deviceIds).size === input.deviceIds.length, 'campaign.device_ids', 'must not repeat a device');
    v.check(input.canaryPercent <= 100, 'campaign.canary_percent', 'must be at most 100');
    v.check(input.maxConcurrent <= 10_000, 'campaign.max_concurrent', 'must be at most 10000');
    v.check(input.failureThresholdPercent <= 100, 'campaign.failure_threshold_percent', 'must be at most 100');
    v.maxLength(input.description, 2000, 'campaign.description');
    if (input.expireTime) v.check(input.expireTime.getTime() > Date.now(), 'campaign.expire_time', 'must be in the future');
    v.throwIfAny();

    const firmware = await this.deps.firmware.get(tenantId, input.firmwareId, 'campaign.firmware_id');
    if (!firmware.uploadComplete) throw errors.failedPrecondition(`firmware ${firmware.id} is still being uploaded (${firmware.uploadedBytes} bytes so far)`);
    const devices = await this.deps.jobs.targets(tenantId, input.groupId, input.deviceIds, 'campaign');
    const foreign = devices.filter((d) => d.deviceTypeId !== firmware.deviceTypeId);
    if (foreign.length > 0) {
      throw errors.invalidArgument(
        foreign.slice(0, 20).map((d) => ({ field: input.groupId ? 'campaign.group_id' : 'campaign.device_ids', description: `device ${JSON.stringify(d.id)} is not of the firmware's device type` })),
      );
    }
    const ids = devices.map((d) => d.id);
    const canarySize = input.canaryPercent > 0 ? Math.max(1, Math.ceil((ids.length * input.canaryPercent) / 100)) : 0;
    const spec: CampaignSpec = {
      tenantId,
      id: crypto.randomUUID(),
      firmwareId: firmware.id,
      description: input.description,
      groupId: input.groupId,
      canaryPercent: input.canaryPercent,
      maxConcurrent: input.maxConcurrent || DEFAULT_MAX_IN_FLIGHT,
      failureThresholdPercent: input.failureThresholdPercent,
      expireTime: input.expireTime ?? new Date(Date.now() + DEFAULT_JOB_TTL_MS),
      stage: canarySize > 0 ? 'canary' : 'rollout',
      canaryJobId: canarySize > 0 ? crypto.randomUUID() : undefined,
      rolloutJobId: crypto.randomUUID(),
      rolloutDeviceIds: ids.slice(canarySize),
      rolloutStarted: canarySize === 0,
      actorId: input.actorId,
    };
    const first = spec.canaryJobId ? { id: spec.canaryJobId, devices: ids.slice(0, canarySize), stage: 'canary' as const } : { id: spec.rolloutJobId, devices: ids, stage: 'rollout' as const };
    const { missing } = await this.deps.jobStore.insert(this.stageJob(spec, firmware, first.id, first.stage, first.devices.length), first.devices);
    if (missing.length > 0) throw errors.invalidArgument(missing.slice(0, 20).map((id) => ({ field: 'campaign.device_ids', description: `names no device: ${JSON.stringify(id)}` })));
    const campaign = await this.deps.store.insertCampaign(spec.rolloutStarted ? { ...spec, rolloutDeviceIds: [] } : spec);
    this.deps.onJobsChanged?.();
    return campaign;
  }

  async get(tenantId: string, id: string): Promise<CampaignRecord> {
    if (!id) throw errors.invalidArgument([{ field: 'id', description: 'is required' }]);
    const found = await this.deps.store.getCampaign(tenantId, id);
    if (!found) throw errors.notFound('campaign', id);
    return found;
  }

  async list(tenantId: string, size: number, before: string | undefined): Promise<{ campaigns: CampaignRecord[]; nextBefore?: string }> {
    const rows = await this.deps.store.listCampaigns(tenantId, before, size + 1);
    const campaigns = rows.slice(0, size);
    return { campaigns, nextBefore: rows.length > size ? campaigns[campaigns.length - 1].seq : undefined };
  }

  async devices(tenantId: string, id: string, size: number, after: string | undefined): Promise<{ devices: CampaignDeviceRecord[]; nextAfter?: string }> {
    const campaign = await this.get(tenantId, id);
    const rows = await this.deps.store.campaignDevices(tenantId, campaign, after, size + 1);
    const devices = rows.slice(0, size);
    return { devices, nextAfter: rows.length > size ? devices[devices.length - 1].seq : undefined };
  }

  /** FAILED_PRECONDITION when the campaign already ended. */
  async cancel(tenantId: string, id: string, actorId: string): Promise<CampaignRecord> {
    const reason = `cancelled by ${actorId}`;
    let current: CampaignRecord | undefined;
    const cancelled = await this.deps.store.advance(tenantId, (await this.get(tenantId, id)).id, async (c) => {
      current = c;
      return { state: 'cancelled', stage: c.stage, reason };
    });
    if (!cancelled) throw errors.failedPrecondition(`campaign ${id} already ended (${(await this.get(tenantId, id)).state})`);
    const jobId = current!.stage === 'canary' ? current!.canaryJobId! : current!.rolloutJobId;
    await this.deps.jobs.cancel(tenantId, jobId, actorId).catch(() => undefined);
    return this.get(tenantId, id);
  }

  /** Calls `send` with the campaign now and whenever its progress changed, until it ended or `signal` aborted. */
  async watch(tenantId: string, id: string, send: (c: CampaignRecord) => Promise<void>, signal: AbortSignal, everyMs = 500): Promise<void> {
    await watchProgress(() => this.get(tenantId, id), (c) => [c.state, c.stage, c.counts], send, signal, everyMs);
  }

  /**
   * `twins.report` for the state-report consumer: each device's reports are
   * stored one after another in arrival order (a device reports
   * downloading, installing, succeeded within milliseconds, and the last
   * must be the one kept), and a stored report goes on to {@link reported}.
   */
  reportsOf(twins: Pick<Twins, 'report'>): Pick<Twins, 'report'> {
    const tails = new Map<string, Promise<unknown>>();
    return {
      report: (tenantId, deviceId, reported) => {
        const key = `${tenantId}.${deviceId}`;
        const run = (tails.get(key) ?? Promise.resolve()).catch(() => undefined).then(async () => {
          const outcome = await twins.report(tenantId, deviceId, reported);
          if (outcome === 'stored') await this.reported(tenantId, deviceId, reported);
          return outcome;
        });
        tails.set(key, run);
        void run.finally(() => tails.get(key) === run && tails.delete(key)).catch(() => undefined);
        return run;
      },
    };
  }

  /** A device's reported state: a finished install of a version ends its step in the campaigns awaiting that version. */
  async reported(tenantId: string, deviceId: string, reported: JsonObject): Promise<void> {
    const fw = reported.firmware as ReportedFirmware | undefined;
    if (!fw || typeof fw !== 'object') return;
    let finished: string[] = [];
    if (fw.status === 'succeeded' && typeof fw.version === 'string') {
      finished = await this.deps.jobStore.finishReported(tenantId, deviceId, fw.version, { state: 'succeeded', reason: `runs ${fw.version}` });
    } else if (fw.status === 'failed' && typeof fw.target_version === 'string') {
      const reason = typeof fw.reason === 'string' && fw.reason ? fw.reason.slice(0, 500) : 'the device reported a failed install';
      finished = await this.deps.jobStore.finishReported(tenantId, deviceId, fw.target_version, { state: 'failed', reason });
    }
    if (finished.length > 0) this.deps.onJobsChanged?.();
  }

  /**
   * One pass over the running campaigns: a stage whose job ended moves the
   * campaign on (under the campaign's row lock, and the rollout job's id was
   * chosen at creation, so two replicas or a restart start it once).
   */
  async advance(): Promise<void> {
    for (const running of await this.deps.store.runningCampaigns()) {
      await this.deps.store.advance(running.tenantId, running.id, async (c) => {
        const jobId = c.stage === 'canary' ? c.canaryJobId! : c.rolloutJobId;
        const stage = await this.deps.jobStore.get(c.tenantId, jobId);
        if (!stage || stage.state === 'running') return undefined;
        if (stage.state === 'aborted') return { state: 'aborted', stage: c.stage, reason: `${c.stage} stage ${stage.reason}` };
        if (stage.state === 'cancelled') return { state: 'cancelled', stage: c.stage, reason: stage.reason };
        if (c.stage === 'rollout' || c.rolloutDeviceIds.length === 0) return { state: 'completed', stage: c.stage, reason: 'every device finished' };
        const firmware = await this.deps.firmware.get(c.tenantId, c.firmwareId);
        const job = this.stageJob(c, firmware, c.rolloutJobId, 'rollout', c.rolloutDeviceIds.length);
        const inserted = await this.deps.jobStore.insert(job, c.rolloutDeviceIds).catch((err: { code?: string }) => {
          // Inserted before, by a pass that did not get to record it.
          if (err.code === PG_ERROR.uniqueViolation) return { missing: [] as string[] };
          throw err;
        });
        if (inserted.missing.length > 0) this.deps.log.warn({ campaignId: c.id, missing: inserted.missing.length }, 'devices of the rollout stage were deleted; started without them');
        if (inserted.missing.length > 0) {
          const left = new Set(inserted.missing);
          await this.deps.jobStore.insert(job, c.rolloutDeviceIds.filter((d) => !left.has(d)));
        }
        this.deps.onJobsChanged?.();
        return { state: 'running', stage: 'rollout', reason: `canary stage: ${stage.reason}` };
      });
    }
  }

  /**
   * A stage's job. Its abort threshold is judged once the whole canary stage
   * finished, and in the rollout stage once 10 of its devices (or all) did.
   */
  private stageJob(c: CampaignSpec, firmware: FirmwareRecord, id: string, stage: CampaignStage, devices: number): JobSpec {
    return {
      tenantId: c.tenantId,
      id,
      description: `firmware ${firmware.version}, ${stage} stage of campaign ${c.id}`,
      desiredPatch: { firmware: { version: firmware.version, url: firmware.url, sha256: firmware.sha256 } },
      groupId: c.groupId,
      rollout: { maxInFlight: c.maxConcurrent, maxPerSecond: 0, abortThresholdPercent: c.failureThresholdPercent, abortMinFinished: stage === 'canary' ? devices : Math.min(devices, 10) },
      expireTime: c.expireTime,
      actorId: c.actorId,
      awaitFirmware: firmware.version,
    };
  }
}
