import crypto from 'node:crypto';
import { errors, Violations } from '@iot-mesh/runtime';
import type { JobStore } from '../store/job-store';
import { COMMAND_NAME, DEFAULT_COMMAND_TIMEOUT_MS, MAX_COMMAND_TIMEOUT_MS } from './commands';
import type { DeviceRegistry } from './devices';
import type { DeviceTypes } from './device-types';
import type { Groups } from './groups';
import { DeviceRecord, JsonObject } from './model';
import { documentSize, TWIN_DOCUMENT_LIMIT } from './twins';

export type JobState = 'running' | 'completed' | 'aborted' | 'cancelled';
export type JobDeviceState = 'queued' | 'sent' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled';

/** The rollout controls of a job. */
export interface JobRollout {
  maxInFlight: number;
  /** 0: no limit. */
  maxPerSecond: number;
  /** 0: never abort. */
  abortThresholdPercent: number;
  abortMinFinished: number;
}

/** The command a job sends. */
export interface JobCommandSpec {
  name: string;
  params?: JsonObject;
  timeoutMs: number;
}

/** A job as it is stored when created. */
export interface JobSpec {
  tenantId: string;
  id: string;
  description: string;
  /** Exactly one of command and desiredPatch. */
  command?: JobCommandSpec;
  desiredPatch?: JsonObject;
  /** '' when the job names its devices. */
  groupId: string;
  rollout: JobRollout;
  expireTime: Date;
  actorId: string;
  /**
   * A firmware campaign's stage: after its desired state is set, a device's
   * step stays sent until the device reports this firmware version (or a
   * failure to install it); '' or absent for ordinary jobs.
   */
  awaitFirmware?: string;
}

/** How many devices of a job are in each state. */
export interface JobCounts {
  total: number;
  queued: number;
  sent: number;
  succeeded: number;
  failed: number;
  timedOut: number;
  cancelled: number;
}

/** A stored job and its progress. */
export interface JobRecord extends JobSpec {
  seq: string;
  state: JobState;
  reason: string;
  createTime: Date;
  updateTime: Date;
  counts: JobCounts;
}

/** One device's state in a job. */
export interface JobDeviceRecord {
  deviceId: string;
  seq: string;
  state: JobDeviceState;
  reason: string;
  result?: JsonObject;
  sentTime?: Date;
  finishTime?: Date;
}

/** The outcome of one device's step. */
export interface JobStep {
  state: 'succeeded' | 'failed' | 'timed_out';
  reason: string;
  result?: JsonObject;
}

/** What CreateJob asks for. */
export interface JobInput {
  description: string;
  command?: { name: string; params?: JsonObject; timeoutMs?: number };
  desiredPatch?: JsonObject;
  groupId: string;
  deviceIds: string[];
  rollout: Partial<JobRollout>;
  expireTime?: Date;
  actorId: string;
}

/** Most devices one job may name. */
export const MAX_JOB_DEVICES = 100_000;
/** Most steps in flight when the job names no limit. */
export const DEFAULT_MAX_IN_FLIGHT = 50;
/** How long a job waits for offline devices when it names no expiry. */
export const DEFAULT_JOB_TTL_MS = 86_400_000;

/**
 * Jobs: one command or desired-state change for many devices, with each
 * device's state. Creating a job only queues its devices; the
 * {@link JobRunner} (possibly of another replica) carries it out.
 */
export class Jobs {
  constructor(
    private readonly store: JobStore,
    private readonly registry: Pick<DeviceRegistry, 'list' | 'get'>,
    private readonly groups: Pick<Groups, 'get'>,
    /** Command schemas of device types; absent, any command is queued. */
    private readonly rules?: Pick<DeviceTypes, 'checkCommand'>,
    /** Told when a job was created (to start it at once). */
    private readonly onCreated?: () => void,
  ) {}

  async create(tenantId: string, input: JobInput): Promise<JobRecord> {
    const v = new Violations();
    v.check((input.command === undefined) !== (input.desiredPatch === undefined), 'job', 'must have exactly one of command and desired');
    v.check((input.groupId === '') !== (input.deviceIds.length === 0), 'job', 'must name exactly one of group_id and device_ids');
    v.maxLength(input.description, 2000, 'job.description');
    v.check(input.deviceIds.length <= MAX_JOB_DEVICES, 'job.device_ids', `must name at most ${MAX_JOB_DEVICES} devices`);
    v.check(new Set(input.deviceIds).size === input.deviceIds.length, 'job.device_ids', 'must not repeat a device');
    if (input.command) {
      v.check(COMMAND_NAME.test(input.command.name), 'job.command.name', "must be 1-128 characters: letters, digits, '_', '.', '-'");
      if (input.command.params) v.check(documentSize(input.command.params) <= TWIN_DOCUMENT_LIMIT, 'job.command.params', `must be at most ${TWIN_DOCUMENT_LIMIT} bytes as JSON`);
      const t = input.command.timeoutMs;
      if (t !== undefined) v.check(t > 0 && t <= MAX_COMMAND_TIMEOUT_MS, 'job.command.timeout', `must be more than 0 and at most ${MAX_COMMAND_TIMEOUT_MS / 1000} s`);
    }
    if (input.desiredPatch) {
      v.check(Object.keys(input.desiredPatch).length > 0, 'job.desired.patch', 'must set at least one key');
      v.check(documentSize(input.desiredPatch) <= TWIN_DOCUMENT_LIMIT, 'job.desired.patch', `must be at most ${TWIN_DOCUMENT_LIMIT} bytes as JSON`);
    }
    const r = input.rollout;
    v.check(r.abortThresholdPercent === undefined || r.abortThresholdPercent <= 100, 'job.rollout.abort_threshold_percent', 'must be at most 100');
    v.check(r.maxInFlight === undefined || r.maxInFlight <= 10_000, 'job.rollout.max_in_flight', 'must be at most 10000');
    if (input.expireTime) v.check(input.expireTime.getTime() > Date.now(), 'job.expire_time', 'must be in the future');
    v.throwIfAny();

    const devices = await this.targets(tenantId, input.groupId, input.deviceIds, 'job');
    if (input.command && this.rules) {
      // The params must fit the command schema of every device type among the targets: one device of each type stands for it.
      const byType = new Map<string, DeviceRecord>();
      for (const d of devices) if (d.deviceTypeId && !byType.has(d.deviceTypeId)) byType.set(d.deviceTypeId, d);
      for (const d of byType.values()) await this.rules.checkCommand(d, input.command.name, input.command.params);
    }
    const spec: JobSpec = {
      tenantId,
      id: crypto.randomUUID(),
      description: input.description,
      command: input.command ? { name: input.command.name, params: input.command.params, timeoutMs: input.command.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS } : undefined,
      desiredPatch: input.desiredPatch,
      groupId: input.groupId,
      rollout: {
        maxInFlight: r.maxInFlight || DEFAULT_MAX_IN_FLIGHT,
        maxPerSecond: r.maxPerSecond ?? 0,
        abortThresholdPercent: r.abortThresholdPercent ?? 0,
        abortMinFinished: r.abortMinFinished || 1,
      },
      expireTime: input.expireTime ?? new Date(Date.now() + DEFAULT_JOB_TTL_MS),
      actorId: input.actorId,
    };
    const { job, missing } = await this.store.insert(
      spec,
      devices.map((d) => d.id),
    );
    // A device deleted between listing and storing.
    if (!job) throw errors.invalidArgument(missing.slice(0, 20).map((id) => ({ field: 'job.device_ids', description: `names no device: ${JSON.stringify(id)}` })));
    this.onCreated?.();
    return job;
  }

  async get(tenantId: string, id: string): Promise<JobRecord> {
    if (!id) throw errors.invalidArgument([{ field: 'id', description: 'is required' }]);
    const job = await this.store.get(tenantId, id);
    if (!job) throw errors.notFound('job', id);
    return job;
  }

  /** Jobs of the tenant, newest first. */
  async list(tenantId: string, size: number, before: string | undefined): Promise<{ jobs: JobRecord[]; nextBefore?: string }> {
    const rows = await this.store.list(tenantId, before, size + 1);
    const jobs = rows.slice(0, size);
    return { jobs, nextBefore: rows.length > size ? jobs[jobs.length - 1].seq : undefined };
  }

  /** The job's devices in rollout order. */
  async devices(tenantId: string, id: string, state: JobDeviceState | undefined, size: number, after: string | undefined): Promise<{ devices: JobDeviceRecord[]; nextAfter?: string }> {
    await this.get(tenantId, id);
    const rows = await this.store.devices(tenantId, id, state, after, size + 1);
    const devices = rows.slice(0, size);
    return { devices, nextAfter: rows.length > size ? devices[devices.length - 1].seq : undefined };
  }

  /** FAILED_PRECONDITION when the job already ended. */
  async cancel(tenantId: string, id: string, actorId: string): Promise<JobRecord> {
    const job = await this.get(tenantId, id);
    if (!(await this.store.cancel(tenantId, job.id, `cancelled by ${actorId}`))) throw errors.failedPrecondition(`job ${id} already ended (${(await this.get(tenantId, id)).state})`);
    return this.get(tenantId, id);
  }

  /**
   * Calls `send` with the job now and whenever its progress changed, polling
   * the table (so it sees every replica's progress) every `everyMs`, until
   * the job ended or `signal` aborted.
   */
  async watch(tenantId: string, id: string, send: (job: JobRecord) => Promise<void>, signal: AbortSignal, everyMs = 500): Promise<void> {
    await watchProgress(() => this.get(tenantId, id), (job) => [job.state, job.counts], send, signal, everyMs);
  }

  /**
   * The devices a job (or a campaign, `message` naming its fields) is for: the
   * group's as they are now, or the named ones (each must exist).
   */
  async targets(tenantId: string, groupId: string, deviceIds: string[], message: string): Promise<DeviceRecord[]> {
    const devices = groupId ? await this.groupDevices(tenantId, groupId, message) : await this.named(tenantId, deviceIds, message);
    if (devices.length === 0) throw errors.failedPrecondition('the group matches no device');
    return devices;
  }

  private async groupDevices(tenantId: string, groupId: string, message: string): Promise<DeviceRecord[]> {
    const group = await this.groups.get(tenantId, groupId, `${message}.group_id`);
    const devices: DeviceRecord[] = [];
    let after: string | undefined;
    do {
      const page = await this.registry.list(tenantId, { groupId: group.id }, 1000, after);
      devices.push(...page.devices);
      after = page.nextAfter;
    } while (after !== undefined && devices.length <= MAX_JOB_DEVICES);
    if (devices.length > MAX_JOB_DEVICES) throw errors.failedPrecondition(`the group matches more than ${MAX_JOB_DEVICES} devices`);
    return devices;
  }

  private async named(tenantId: string, ids: string[], message: string): Promise<DeviceRecord[]> {
    const devices: DeviceRecord[] = [];
    const missing: string[] = [];
    for (let i = 0; i < ids.length; i += 64) {
      const batch = await Promise.all(ids.slice(i, i + 64).map((id) => this.registry.get(tenantId, id).catch(() => undefined)));
      batch.forEach((d, j) => (d ? devices.push(d) : missing.push(ids[i + j])));
    }
    if (missing.length > 0) throw errors.invalidArgument(missing.slice(0, 20).map((id) => ({ field: `${message}.device_ids`, description: `names no device: ${JSON.stringify(id)}` })));
    return devices;
  }
}

/**
 * Calls `send` with what `load` returns now and whenever its `progress`
 * changed, polling (so it sees every replica's progress) every `everyMs`,
 * until its state is no longer running or `signal` aborted.
 */
export async function watchProgress<T extends { state: string }>(
  load: () => Promise<T>,
  progress: (value: T) => unknown,
  send: (value: T) => Promise<void>,
  signal: AbortSignal,
  everyMs: number,
): Promise<void> {
  let last = '';
  for (;;) {
    const value = await load();
    const seen = JSON.stringify(progress(value));
    if (seen !== last) {
      last = seen;
      await send(value);
    }
    if (value.state !== 'running' || signal.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, everyMs);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
    if (signal.aborted) return;
  }
}
