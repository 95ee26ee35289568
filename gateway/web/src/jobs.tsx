import { FormEvent, useEffect, useState } from 'react';
import { useSearchParams } from 'react-router';
import type { JsonObject } from '@bufbuild/protobuf';
import { Job, JobDevice, JobState } from '../../../gen/es/iot/device/v1/jobs_pb';
import { api, errorMessage } from './api';
import { commaList, hoursFromNow } from './format';
import { useAbilities } from './principal';
import { DeviceProgressTable, mapStream, useLiveProgress } from './components/device-progress';

const jobStateName = (s: JobState) => JobState[s]?.replace('JOB_STATE_', '').toLowerCase() ?? '';

/** `queued 3 · sent 2 · …` for a job's counts. */
function countsText(job: Job): string {
  const c = job.counts;
  if (!c) return '';
  return `${c.succeeded + c.failed + c.timedOut + c.cancelled}/${c.total} done · ${c.succeeded} ok · ${c.failed} failed · ${c.timedOut} timed out · ${c.cancelled} cancelled · ${c.sent} sent · ${c.queued} queued`;
}

/** The JSON object in `text`; throws a readable error otherwise. */
function parseObject(text: string, what: string): JsonObject | undefined {
  if (!text.trim()) return undefined;
  const value: unknown = JSON.parse(text);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  return value as JsonObject;
}

const EMPTY_FORM = { action: 'command', name: '', params: '', desired: '', groupId: '', deviceIds: '', maxInFlight: '', maxPerSecond: '', abortPercent: '', expireHours: '' };

/** Jobs of the tenant: a command or desired-state change for many devices, its live progress and each device's state. */
export function JobsPage() {
  const { canOperate } = useAbilities();
  const [jobs, setJobs] = useState<Job[]>([]);
  const [selected, setSelected] = useState<Job>();
  const [devices, setDevices] = useState<JobDevice[]>([]);
  // The devices page's "Start a job…" on selected devices arrives as ?devices=a,b,c.
  const [params] = useSearchParams();
  const [form, setForm] = useState({ ...EMPTY_FORM, deviceIds: params.get('devices') ?? '' });
  const [error, setError] = useState('');

  async function load() {
    try {
      setJobs((await api.jobs.listJobs({ page: { pageSize: 100 } })).jobs);
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  useEffect(() => void load(), []);

  // The selected job's progress as the server streams it (the stream ends with the job).
  useLiveProgress(
    selected?.id,
    (id, signal) => mapStream(api.jobs.watchJob({ id }, { signal }), (r) => r.job),
    async (id) => (await api.jobs.listJobDevices({ id, page: { pageSize: 1000 } })).devices,
    (job) => {
      setSelected(job);
      setJobs((all) => all.map((j) => (j.id === job.id ? job : j)));
    },
    setDevices,
    setError,
  );

  async function create(e: FormEvent) {
    e.preventDefault();
    setError('');
    try {
      const ids = commaList(form.deviceIds);
      const { job } = await api.jobs.createJob({
        job: {
          command: form.action === 'command' ? { name: form.name, params: parseObject(form.params, 'Parameters') } : undefined,
          desired: form.action === 'desired' ? { patch: parseObject(form.desired, 'Desired state') ?? {} } : undefined,
          groupId: form.groupId.trim(),
          deviceIds: ids,
          rollout: { maxInFlight: Number(form.maxInFlight) || 0, maxPerSecond: Number(form.maxPerSecond) || 0, abortThresholdPercent: Number(form.abortPercent) || 0 },
          expireTime: hoursFromNow(form.expireHours),
        },
      });
      setForm(EMPTY_FORM);
      await load();
      if (job) setSelected(job);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  async function cancel(id: string) {
    try {
      await api.jobs.cancelJob({ id });
      await load();
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const set = (key: keyof typeof EMPTY_FORM) => (e: { target: { value: string } }) => setForm({ ...form, [key]: e.target.value });

  return (
    <section>
      <h1>Jobs</h1>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table data-testid="job-list">
        <thead>
          <tr>
            <th>Created</th>
            <th>Action</th>
            <th>Target</th>
            <th>State</th>
            <th>Progress</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => (
            <tr key={j.id} data-testid={`job-${j.id}`}>
              <td>{j.createTime ? new Date(Number(j.createTime.seconds) * 1000).toLocaleString() : ''}</td>
              <td>{j.command ? `command ${j.command.name}` : 'desired state'}</td>
              <td>{j.groupId ? `group ${j.groupId}` : 'device list'}</td>
              <td title={j.reason}>{jobStateName(j.state)}</td>
              <td>{countsText(j)}</td>
              <td>
                <button onClick={() => setSelected(j)}>Devices</button>{' '}
                {canOperate && j.state === JobState.RUNNING && <button onClick={() => void cancel(j.id)}>Cancel</button>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {selected && (
        <div data-testid="job-devices">
          <h2>
            Job {selected.id}: {jobStateName(selected.state)}
          </h2>
          <p className="muted">
            {countsText(selected)} {selected.reason && `· ${selected.reason}`}
          </p>
          <DeviceProgressTable devices={devices} />
        </div>
      )}
      {canOperate && (
        <form className="inline-form" onSubmit={create} aria-label="create job" data-testid="create-job">
          <select value={form.action} aria-label="Action" onChange={set('action')}>
            <option value="command">Command</option>
            <option value="desired">Desired state</option>
          </select>
          {form.action === 'command' ? (
            <>
              <input value={form.name} placeholder="command name" aria-label="Command" onChange={set('name')} />
              <input value={form.params} placeholder='{"celsius": 21}' aria-label="Parameters" onChange={set('params')} />
            </>
          ) : (
            <input value={form.desired} placeholder='{"mode": "eco"}' aria-label="Desired state" onChange={set('desired')} />
          )}
          <input value={form.groupId} placeholder="group id" aria-label="Group" onChange={set('groupId')} />
          <input value={form.deviceIds} placeholder="or device ids: a, b" aria-label="Devices" onChange={set('deviceIds')} />
          <input value={form.maxInFlight} placeholder="max in flight" aria-label="Max in flight" onChange={set('maxInFlight')} />
          <input value={form.maxPerSecond} placeholder="max per second" aria-label="Max per second" onChange={set('maxPerSecond')} />
          <input value={form.abortPercent} placeholder="abort above % failed" aria-label="Abort threshold" onChange={set('abortPercent')} />
          <input value={form.expireHours} placeholder="expires in hours (24)" aria-label="Expiry" onChange={set('expireHours')} />
          <button type="submit">Create job</button>
        </form>
      )}
    </section>
  );
}
