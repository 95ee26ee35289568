import { FormEvent, useEffect, useState } from 'react';
import { DeviceType } from '../../../gen/es/iot/device/v1/device_types_pb';
import { RetentionPolicy } from '../../../gen/es/iot/monitoring/v1/retention_pb';
import { api, errorMessage } from './api';
import { TableHead } from './components/table-head';
import { formatTime } from './format';
import { GroupSelect } from './components/group-select';
import { useAbilities } from './principal';
import { currentSession } from './session';

type Selection = 'devices' | 'group' | 'type';

/** `datetime-local` value of a time (local time, minutes). */
function localInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

/** The file name the gateway's Content-Disposition gives, else a fallback. */
function fileNameOf(res: Response, fallback: string): string {
  return /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? fallback;
}

/**
 * Export: stored telemetry of devices, a group or a device type over a range
 * as CSV, NDJSON or Parquet, downloaded through the gateway's `/v1/export`
 * route (ExportPoints' server stream written as the HTTP body); and the
 * tenant's retention policies, which say how long that data stays.
 */
export function ExportPage() {
  const [types, setTypes] = useState<DeviceType[]>([]);
  const [form, setForm] = useState({ selection: 'devices' as Selection, deviceIds: '', groupId: '', deviceType: '', metrics: '', from: localInput(Date.now() - 86_400_000), to: localInput(Date.now()), format: 'csv', bucketSeconds: '' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');

  useEffect(() => {
    api.deviceTypes.listDeviceTypes({ page: { pageSize: 1000 } }).then((r) => setTypes(r.deviceTypes), (err) => setError(errorMessage(err)));
  }, []);

  /** The query of the download: the selection, range, format and (optional) bucket width. */
  function query(): URLSearchParams {
    const q = new URLSearchParams();
    if (form.selection === 'devices') for (const id of form.deviceIds.split(/[\s,]+/).filter(Boolean)) q.append('device_ids', id);
    // The server resolves the group to its members (its selector, device type by id) when the export starts.
    if (form.selection === 'group') q.set('group_id', form.groupId);
    if (form.selection === 'type') q.set('device_type', form.deviceType);
    for (const m of form.metrics.split(/[\s,]+/).filter(Boolean)) q.append('metrics', m);
    q.set('time_range.start', new Date(form.from).toISOString());
    q.set('time_range.end', new Date(form.to).toISOString());
    q.set('format', form.format);
    if (form.bucketSeconds) q.set('bucket_width', `${Number(form.bucketSeconds)}s`);
    return q;
  }

  async function download(event: FormEvent) {
    event.preventDefault();
    setError('');
    setNotice('');
    setBusy(true);
    try {
      const res = await fetch(`/v1/export?${query()}`, { headers: { authorization: `Bearer ${currentSession()?.accessToken ?? ''}` } });
      if (!res.ok) {
        const status = (await res.json().catch(() => ({}))) as { message?: string; details?: { fieldViolations?: { field: string; description: string }[] }[] };
        const violations = (status.details ?? []).flatMap((d) => d.fieldViolations ?? []).map((v) => `${v.field}: ${v.description}`);
        throw new Error(`${res.status} ${status.message ?? res.statusText}${violations.length ? ` (${violations.join('; ')})` : ''}`);
      }
      const blob = await res.blob();
      const name = fileNameOf(res, `export.${form.format}`);
      const link = document.createElement('a');
      link.href = URL.createObjectURL(blob);
      link.download = name;
      link.click();
      URL.revokeObjectURL(link.href);
      setNotice(`downloaded ${name} (${blob.size} bytes)`);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  const set = (patch: Partial<typeof form>) => setForm({ ...form, ...patch });
  return (
    <section>
      <h1>Export</h1>
      <p className="muted">Raw points, or history buckets when a bucket width is given, streamed by the server in constant memory; very large files are better fetched with <code>iotctl export</code>.</p>
      <form className="inline-form" onSubmit={(e) => void download(e)} aria-label="export telemetry">
        <label>
          Devices from
          <select aria-label="selection" value={form.selection} onChange={(e) => set({ selection: e.target.value as Selection })}>
            <option value="devices">device ids</option>
            <option value="group">a group</option>
            <option value="type">a device type</option>
          </select>
        </label>
        {form.selection === 'devices' && <input aria-label="device ids" placeholder="device ids, comma-separated" value={form.deviceIds} onChange={(e) => set({ deviceIds: e.target.value })} />}
        {form.selection === 'group' && <GroupSelect label="group" emptyLabel="choose a group" value={form.groupId} onChange={(groupId) => set({ groupId })} onError={setError} />}
        {form.selection === 'type' && (
          <select aria-label="device type" value={form.deviceType} onChange={(e) => set({ deviceType: e.target.value })}>
            <option value="">choose a device type</option>
            {types.map((t) => (
              <option key={t.id} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        )}
        <input aria-label="metrics" placeholder="metrics (all when empty)" value={form.metrics} onChange={(e) => set({ metrics: e.target.value })} />
        <label>
          From <input aria-label="from" type="datetime-local" value={form.from} onChange={(e) => set({ from: e.target.value })} />
        </label>
        <label>
          To <input aria-label="to" type="datetime-local" value={form.to} onChange={(e) => set({ to: e.target.value })} />
        </label>
        <label>
          Format
          <select aria-label="format" value={form.format} onChange={(e) => set({ format: e.target.value })}>
            <option value="csv">CSV</option>
            <option value="ndjson">NDJSON</option>
            <option value="parquet">Parquet</option>
          </select>
        </label>
        <input aria-label="bucket seconds" type="number" min="1" placeholder="bucket width in seconds (raw points when empty)" value={form.bucketSeconds} onChange={(e) => set({ bucketSeconds: e.target.value })} />
        <button type="submit" disabled={busy}>
          {busy ? 'Exporting…' : 'Download'}
        </button>
      </form>
      {notice && <p role="status">{notice}</p>}
      {error && <p role="alert" className="error">{error}</p>}
      <RetentionPolicies />
    </section>
  );
}

function days(stored: number, effective: number): string {
  return stored ? String(stored) : `${effective} (inherited)`;
}

/** The tenant's retention policies (tenant default and device types), and for admins a form to set one. */
function RetentionPolicies() {
  const { canAdmin } = useAbilities();
  const [policies, setPolicies] = useState<RetentionPolicy[]>([]);
  const [form, setForm] = useState({ deviceType: '', rawDays: '', rollupDays: '' });
  const [error, setError] = useState('');
  const [reload, setReload] = useState(0);

  useEffect(() => {
    api.retention.listRetentionPolicies({}).then((r) => setPolicies(r.policies), (err) => setError(errorMessage(err)));
  }, [reload]);

  async function save(event: FormEvent) {
    event.preventDefault();
    setError('');
    try {
      await api.retention.setRetentionPolicy({ policy: { deviceType: form.deviceType.trim(), rawDays: Number(form.rawDays || 0), rollupDays: Number(form.rollupDays || 0) } });
      setForm({ deviceType: '', rawDays: '', rollupDays: '' });
      setReload((n) => n + 1);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  return (
    <>
      <h2>Retention</h2>
      <p className="muted">How long raw points and rollups (history buckets) are kept; a device type's days win over the tenant's. Data goes at the first hourly retention run at or after the time shown.</p>
      <table aria-label="retention policies">
        <TableHead columns={['Device type', 'Raw days', 'Rollup days', 'Next raw drop', 'Next rollup drop']} />
        <tbody>
          {policies.map((p) => (
            <tr key={p.deviceType}>
              <td>{p.deviceType || '(tenant default)'}</td>
              <td>{days(p.rawDays, p.effectiveRawDays)}</td>
              <td>{days(p.rollupDays, p.effectiveRollupDays)}</td>
              <td>{formatTime(p.nextRawDropTime)}</td>
              <td>{formatTime(p.nextRollupDropTime)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {canAdmin && (
        <form className="inline-form" onSubmit={(e) => void save(e)} aria-label="set retention policy">
          <input aria-label="retention device type" placeholder="device type (empty: tenant default)" value={form.deviceType} onChange={(e) => setForm({ ...form, deviceType: e.target.value })} />
          <input aria-label="raw days" type="number" min="0" placeholder="raw days (0 inherits)" value={form.rawDays} onChange={(e) => setForm({ ...form, rawDays: e.target.value })} />
          <input aria-label="rollup days" type="number" min="0" placeholder="rollup days (0 inherits)" value={form.rollupDays} onChange={(e) => setForm({ ...form, rollupDays: e.target.value })} />
          <button type="submit">Set</button>
        </form>
      )}
      {error && <p role="alert" className="error">{error}</p>}
    </>
  );
}
