import { FormEvent, useEffect, useState } from 'react';
import { Campaign, CampaignDevice, CampaignStage, CampaignState, Firmware } from '../../../gen/es/iot/device/v1/firmware_pb';
import { api, errorMessage } from './api';
import { commaList, hoursFromNow } from './format';
import { TableHead } from './components/table-head';
import { useAbilities } from './principal';
import { DeviceProgressTable, mapStream, useLiveProgress } from './components/device-progress';

const stateName = (s: CampaignState) => CampaignState[s]?.replace('CAMPAIGN_STATE_', '').toLowerCase() ?? '';
const stageName = (s: CampaignStage) => CampaignStage[s]?.replace('CAMPAIGN_STAGE_', '').toLowerCase() ?? '';

/** `8/10 done · 7 ok · 1 failed · …` for a campaign's counts. */
function countsText(c: Campaign): string {
  const n = c.counts;
  if (!n) return '';
  return `${n.succeeded + n.failed + n.timedOut + n.cancelled}/${n.total} done · ${n.succeeded} ok · ${n.failed} failed · ${n.timedOut} timed out · ${n.cancelled} cancelled · ${n.sent} updating · ${n.queued} queued`;
}

/** Share of a campaign's devices finished, 0–100. */
function percentDone(c: Campaign): number {
  const n = c.counts;
  if (!n || n.total === 0) return 0;
  return Math.round(((n.succeeded + n.failed + n.timedOut + n.cancelled) * 100) / n.total);
}

/** The platform's largest upload chunk (UploadFirmwareChunk). */
const UPLOAD_CHUNK_BYTES = 1024 * 1024;

const EMPTY_UPLOAD = { version: '', deviceTypeId: '' };
const EMPTY_FIRMWARE = { version: '', deviceTypeId: '', url: '', sizeBytes: '', sha256: '' };
const EMPTY_CAMPAIGN = { firmwareId: '', groupId: '', deviceIds: '', canaryPercent: '10', maxConcurrent: '', failurePercent: '20', expireHours: '' };

/** Firmware artefacts and staged campaigns: create them, follow a campaign's progress live and each device's result. */
export function FirmwarePage() {
  const { canOperate } = useAbilities();
  const [firmware, setFirmware] = useState<Firmware[]>([]);
  const [campaigns, setCampaigns] = useState<Campaign[]>([]);
  const [selected, setSelected] = useState<Campaign>();
  const [devices, setDevices] = useState<CampaignDevice[]>([]);
  const [fwForm, setFwForm] = useState(EMPTY_FIRMWARE);
  const [form, setForm] = useState(EMPTY_CAMPAIGN);
  const [error, setError] = useState('');
  const [upForm, setUpForm] = useState(EMPTY_UPLOAD);
  const [file, setFile] = useState<File>();
  /** Bytes sent of the image being uploaded, and the firmware once the platform completed it. */
  const [upload, setUpload] = useState<{ sent: number; total: number; done?: Firmware }>();

  async function load() {
    try {
      setFirmware((await api.firmware.listFirmware({ page: { pageSize: 100 } })).firmware);
      setCampaigns((await api.campaigns.listCampaigns({ page: { pageSize: 100 } })).campaigns);
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  useEffect(() => void load(), []);

  // The selected campaign's progress as the server streams it (the stream ends with the campaign).
  useLiveProgress(
    selected?.id,
    (id, signal) => mapStream(api.campaigns.watchCampaign({ id }, { signal }), (r) => r.campaign),
    async (id) => (await api.campaigns.listCampaignDevices({ id, page: { pageSize: 1000 } })).devices,
    (campaign) => {
      setSelected(campaign);
      setCampaigns((all) => all.map((c) => (c.id === campaign.id ? campaign : c)));
    },
    setDevices,
    setError,
  );

  async function createFirmware(e: FormEvent) {
    e.preventDefault();
    setError('');
    try {
      await api.firmware.createFirmware({
        firmware: { version: fwForm.version.trim(), deviceTypeId: fwForm.deviceTypeId.trim(), url: fwForm.url.trim(), sizeBytes: BigInt(Number(fwForm.sizeBytes) || 0), sha256: fwForm.sha256.trim().toLowerCase() },
      });
      setFwForm(EMPTY_FIRMWARE);
      await load();
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  /** Registers a stored firmware and uploads the chosen file in chunks; the platform computes the SHA-256 shown. */
  async function uploadImage(e: FormEvent) {
    e.preventDefault();
    setError('');
    if (!file) return setError('choose the image file to upload');
    try {
      const image = new Uint8Array(await file.arrayBuffer());
      const created = await api.firmware.createFirmware({ firmware: { version: upForm.version.trim(), deviceTypeId: upForm.deviceTypeId.trim(), stored: true, sizeBytes: BigInt(image.length) } });
      const id = created.firmware!.id;
      setUpload({ sent: 0, total: image.length });
      let done: Firmware | undefined;
      for (let offset = 0; !done; offset += UPLOAD_CHUNK_BYTES) {
        const last = offset + UPLOAD_CHUNK_BYTES >= image.length;
        const res = await api.firmware.uploadFirmwareChunk({ id, offset: BigInt(offset), data: image.subarray(offset, offset + UPLOAD_CHUNK_BYTES), last });
        setUpload({ sent: Math.min(offset + UPLOAD_CHUNK_BYTES, image.length), total: image.length, done: last ? res.firmware : undefined });
        if (last) done = res.firmware;
      }
      setUpForm(EMPTY_UPLOAD);
      setFile(undefined);
      await load();
    } catch (err) {
      setUpload(undefined);
      setError(errorMessage(err));
    }
  }

  async function removeFirmware(id: string) {
    try {
      await api.firmware.deleteFirmware({ id });
      await load();
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  async function createCampaign(e: FormEvent) {
    e.preventDefault();
    setError('');
    try {
      const ids = commaList(form.deviceIds);
      const { campaign } = await api.campaigns.createCampaign({
        campaign: {
          firmwareId: form.firmwareId,
          groupId: form.groupId.trim(),
          deviceIds: ids,
          canaryPercent: Number(form.canaryPercent) || 0,
          maxConcurrent: Number(form.maxConcurrent) || 0,
          failureThresholdPercent: Number(form.failurePercent) || 0,
          expireTime: hoursFromNow(form.expireHours),
        },
      });
      setForm(EMPTY_CAMPAIGN);
      await load();
      if (campaign) setSelected(campaign);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  async function cancel(id: string) {
    try {
      await api.campaigns.cancelCampaign({ id });
      await load();
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const setFw = (key: keyof typeof EMPTY_FIRMWARE) => (e: { target: { value: string } }) => setFwForm({ ...fwForm, [key]: e.target.value });
  const set = (key: keyof typeof EMPTY_CAMPAIGN) => (e: { target: { value: string } }) => setForm({ ...form, [key]: e.target.value });

  return (
    <section>
      <h1>Firmware</h1>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table data-testid="firmware-list">
        <TableHead columns={['Version', 'Device type', 'Size', 'SHA-256', 'URL', '']} />
        <tbody>
          {firmware.map((f) => (
            <tr key={f.id} data-testid={`firmware-${f.id}`}>
              <td>{f.version}</td>
              <td>{f.deviceTypeId}</td>
              <td>{f.sizeBytes.toString()}</td>
              <td>
                <code title={f.sha256}>{f.sha256.slice(0, 12)}…</code>
              </td>
              <td>{f.stored && !f.uploadComplete ? `uploading (${f.uploadedBytes} bytes)` : <a href={f.url}>{f.stored ? 'stored by the platform' : f.url}</a>}</td>
              <td>
                {canOperate && <button onClick={() => setForm({ ...form, firmwareId: f.id })}>Roll out…</button>}{' '}
                {canOperate && <button onClick={() => void removeFirmware(f.id)}>Delete</button>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {canOperate && (
        <form className="inline-form" onSubmit={createFirmware} aria-label="create firmware" data-testid="create-firmware">
          <input value={fwForm.version} placeholder="version" aria-label="Version" onChange={setFw('version')} />
          <input value={fwForm.deviceTypeId} placeholder="device type id" aria-label="Device type" onChange={setFw('deviceTypeId')} />
          <input value={fwForm.url} placeholder="https://…/image.bin" aria-label="URL" onChange={setFw('url')} />
          <input value={fwForm.sizeBytes} placeholder="size in bytes" aria-label="Size" onChange={setFw('sizeBytes')} />
          <input value={fwForm.sha256} placeholder="SHA-256 (hex)" aria-label="SHA-256" onChange={setFw('sha256')} />
          <button type="submit">Add firmware</button>
        </form>
      )}

      {canOperate && (
        <form className="inline-form" onSubmit={uploadImage} aria-label="upload firmware" data-testid="upload-firmware">
          <input value={upForm.version} placeholder="version" aria-label="Upload version" onChange={(e) => setUpForm({ ...upForm, version: e.target.value })} />
          <input value={upForm.deviceTypeId} placeholder="device type id" aria-label="Upload device type" onChange={(e) => setUpForm({ ...upForm, deviceTypeId: e.target.value })} />
          <input type="file" aria-label="Image file" onChange={(e) => setFile(e.target.files?.[0])} />
          <button type="submit">Upload image</button>
          {upload && (
            <span data-testid="upload-progress">
              <progress max={upload.total} value={upload.sent} aria-label="upload progress" /> {upload.sent} of {upload.total} bytes
              {upload.done && (
                <>
                  {' '}
                  · SHA-256 <code data-testid="upload-sha256">{upload.done.sha256}</code>
                </>
              )}
            </span>
          )}
        </form>
      )}

      <h2>Campaigns</h2>
      <table data-testid="campaign-list">
        <TableHead columns={['Created', 'Version', 'Target', 'State', 'Stage', 'Progress', '']} />
        <tbody>
          {campaigns.map((c) => (
            <tr key={c.id} data-testid={`campaign-${c.id}`}>
              <td>{c.createTime ? new Date(Number(c.createTime.seconds) * 1000).toLocaleString() : ''}</td>
              <td>{c.version}</td>
              <td>{c.groupId ? `group ${c.groupId}` : 'device list'}</td>
              <td title={c.reason}>{stateName(c.state)}</td>
              <td>{stageName(c.stage)}</td>
              <td>
                <progress max={100} value={percentDone(c)} aria-label="progress" /> {countsText(c)}
              </td>
              <td>
                <button onClick={() => setSelected(c)}>Devices</button>{' '}
                {canOperate && c.state === CampaignState.RUNNING && <button onClick={() => void cancel(c.id)}>Cancel</button>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {selected && (
        <div data-testid="campaign-devices">
          <h2>
            Campaign {selected.id} ({selected.version}): {stateName(selected.state)}, {stageName(selected.stage)} stage
          </h2>
          <p className="muted">
            {countsText(selected)} {selected.reason && `· ${selected.reason}`}
          </p>
          <DeviceProgressTable devices={devices.map((d) => ({ ...d, stage: stageName(d.stage) }))} withStage />
        </div>
      )}
      {canOperate && (
        <form className="inline-form" onSubmit={createCampaign} aria-label="create campaign" data-testid="create-campaign">
          <select value={form.firmwareId} aria-label="Firmware" onChange={set('firmwareId')}>
            <option value="">firmware…</option>
            {firmware.map((f) => (
              <option key={f.id} value={f.id}>
                {f.version} ({f.deviceTypeId})
              </option>
            ))}
          </select>
          <input value={form.groupId} placeholder="group id" aria-label="Group" onChange={set('groupId')} />
          <input value={form.deviceIds} placeholder="or device ids: a, b" aria-label="Devices" onChange={set('deviceIds')} />
          <input value={form.canaryPercent} placeholder="canary %" aria-label="Canary percent" onChange={set('canaryPercent')} />
          <input value={form.maxConcurrent} placeholder="max concurrent (50)" aria-label="Max concurrent" onChange={set('maxConcurrent')} />
          <input value={form.failurePercent} placeholder="abort above % failed" aria-label="Failure threshold" onChange={set('failurePercent')} />
          <input value={form.expireHours} placeholder="expires in hours (24)" aria-label="Expiry" onChange={set('expireHours')} />
          <button type="submit">Start campaign</button>
        </form>
      )}
    </section>
  );
}
