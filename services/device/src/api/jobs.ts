import { callerPrincipal, callerTenant, defineService, durationToMs, errors, msToDuration, pageSize, ServiceRegistration } from '@iot-mesh/runtime';
import { Job, JobDevice, JobDeviceState, JobServiceService, JobState } from '../../../../gen/ts/iot/device/v1/jobs';
import { JobDeviceRecord, JobDeviceState as DomainDeviceState, JobRecord, Jobs, JobState as DomainJobState } from '../domain/jobs';
import { decodeSeqToken, encodeSeqToken } from './devices';

const JOB_STATES: Record<DomainJobState, JobState> = {
  running: JobState.JOB_STATE_RUNNING,
  completed: JobState.JOB_STATE_COMPLETED,
  aborted: JobState.JOB_STATE_ABORTED,
  cancelled: JobState.JOB_STATE_CANCELLED,
};

/** Job device states as the proto enum (campaign devices use them too). */
export const DEVICE_STATES: Record<DomainDeviceState, JobDeviceState> = {
  queued: JobDeviceState.JOB_DEVICE_STATE_QUEUED,
  sent: JobDeviceState.JOB_DEVICE_STATE_SENT,
  succeeded: JobDeviceState.JOB_DEVICE_STATE_SUCCEEDED,
  failed: JobDeviceState.JOB_DEVICE_STATE_FAILED,
  timed_out: JobDeviceState.JOB_DEVICE_STATE_TIMED_OUT,
  cancelled: JobDeviceState.JOB_DEVICE_STATE_CANCELLED,
};

/** A job record as the `iot.device.v1.Job` message (device ids are listed by ListJobDevices). */
export function toJobMessage(j: JobRecord): Job {
  return {
    id: j.id,
    tenantId: j.tenantId,
    description: j.description,
    command: j.command ? { name: j.command.name, params: j.command.params, timeout: msToDuration(j.command.timeoutMs) } : undefined,
    desired: j.desiredPatch ? { patch: j.desiredPatch } : undefined,
    groupId: j.groupId,
    deviceIds: [],
    rollout: j.rollout,
    expireTime: j.expireTime,
    state: JOB_STATES[j.state],
    reason: j.reason,
    counts: j.counts,
    actorId: j.actorId,
    createTime: j.createTime,
    updateTime: j.updateTime,
  };
}

function toJobDeviceMessage(d: JobDeviceRecord): JobDevice {
  return { deviceId: d.deviceId, state: DEVICE_STATES[d.state], reason: d.reason, result: d.result, sentTime: d.sentTime, finishTime: d.finishTime };
}

function fromDeviceState(state: JobDeviceState): DomainDeviceState | undefined {
  if (state === JobDeviceState.JOB_DEVICE_STATE_UNSPECIFIED) return undefined;
  const found = (Object.keys(DEVICE_STATES) as DomainDeviceState[]).find((k) => DEVICE_STATES[k] === state);
  if (!found) throw errors.invalidArgument([{ field: 'state', description: 'is not a job device state' }]);
  return found;
}

/** `iot.device.v1.JobService`: commands and desired-state changes for many devices, with their progress. */
export function jobApi(jobs: Jobs): ServiceRegistration {
  return defineService(JobServiceService, {
    async createJob(request, ctx) {
      const principal = callerPrincipal(ctx);
      const j = request.job;
      if (!j) throw errors.invalidArgument([{ field: 'job', description: 'is required' }]);
      const job = await jobs.create(principal.tenantId, {
        description: j.description,
        command: j.command ? { name: j.command.name, params: j.command.params, timeoutMs: j.command.timeout ? durationToMs(j.command.timeout) : undefined } : undefined,
        desiredPatch: j.desired ? (j.desired.patch ?? {}) : undefined,
        groupId: j.groupId,
        deviceIds: j.deviceIds,
        rollout: j.rollout ?? {},
        expireTime: j.expireTime,
        actorId: principal.id,
      });
      return { job: toJobMessage(job) };
    },
    async getJob(request, ctx) {
      return { job: toJobMessage(await jobs.get(callerTenant(ctx), request.id)) };
    },
    async listJobs(request, ctx) {
      const page = await jobs.list(callerTenant(ctx), pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { jobs: page.jobs.map(toJobMessage), page: { nextPageToken: encodeSeqToken(page.nextBefore) } };
    },
    async listJobDevices(request, ctx) {
      const page = await jobs.devices(callerTenant(ctx), request.id, fromDeviceState(request.state), pageSize(request.page?.pageSize), decodeSeqToken(request.page?.pageToken));
      return { devices: page.devices.map(toJobDeviceMessage), page: { nextPageToken: encodeSeqToken(page.nextAfter) } };
    },
    async cancelJob(request, ctx) {
      const principal = callerPrincipal(ctx);
      return { job: toJobMessage(await jobs.cancel(principal.tenantId, request.id, principal.id)) };
    },
    async watchJob(request, ctx, send) {
      await jobs.watch(callerTenant(ctx), request.id, (job) => send({ job: toJobMessage(job) }), ctx.signal);
    },
  });
}
