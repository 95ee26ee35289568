import { FormEvent, useEffect, useState } from 'react';
import { Device, DeviceCredential, DeviceEventType, DeviceStatus } from '../../../gen/es/iot/device/v1/device_pb';
import { api, errorMessage, followStream } from './api';
import { formatTime } from './format';

/** Online/offline badge; the test id carries the device id. */
export function StatusBadge({ device }: { device: Device }) {
  const label = device.status === DeviceStatus.ONLINE ? 'online' : device.status === DeviceStatus.OFFLINE ? 'offline' : 'unknown';
  return (
    <span className={`badge ${label}`} data-testid={`device-status-${device.id}`}>
      {label}
    </span>
  );
}

/** The ready-to-paste MQTT publish for a fresh credential. */
export function mosquittoPubLine(credential: DeviceCredential): string {
  const url = new URL(credential.mqttUrl || 'mqtt://127.0.0.1:1883');
  const topic = `iot/${credential.tenantId}/dev/${credential.deviceId}/tel`;
  const payload = JSON.stringify({ deviceId: credential.deviceId, points: [{ metric: 'temperature', numberValue: 21.5 }] });
  return `mosquitto_pub -V mqttv311 -h ${url.hostname} -p ${url.port || 1883} -i ${credential.deviceId} -u ${credential.deviceId} -P '${credential.token}' -q 1 -t '${topic}' -m '${payload}'`;
}

/** Shown once after creation: the secret is not retrievable later. */
function CredentialPanel({ credential, onClose }: { credential: DeviceCredential; onClose: () => void }) {
  return (
    <div className="card credential" data-testid="credential" data-device-id={credential.deviceId} data-tenant-id={credential.tenantId} data-mqtt-url={credential.mqttUrl}>
      <h2>Credential for {credential.deviceId}</h2>
      <p className="warning">This token is shown once. Copy it now; rotate the credential if it is lost.</p>
      <label>
        Token
        <textarea readOnly value={credential.token} rows={3} data-testid="credential-token" />
      </label>
      <label>
        Publish a test reading
        <textarea readOnly value={mosquittoPubLine(credential)} rows={4} data-testid="mosquitto-pub" />
      </label>
      <button onClick={onClose}>Done</button>
    </div>
  );
}

function CreateDeviceForm({ onCreated }: { onCreated: (device: Device, credential: DeviceCredential | undefined) => void }) {
  const [name, setName] = useState('');
  const [type, setType] = useState('');
  const [labels, setLabels] = useState('');
  const [error, setError] = useState('');

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError('');
    try {
      const labelMap = Object.fromEntries(
        labels
          .split(',')
          .map((pair) => pair.trim())
          .filter(Boolean)
          .map((pair) => pair.split('=').map((s) => s.trim()) as [string, string]),
      );
      const created = await api.devices.createDevice({ device: { name, type, labels: labelMap } });
      if (!created.device) throw new Error('no device returned');
      const issued = await api.credentials.issueCredential({ deviceId: created.device.id });
      onCreated(created.device, issued.credential);
      setName('');
      setType('');
      setLabels('');
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  return (
    <form className="inline-form" onSubmit={submit} data-testid="create-device">
      <input placeholder="name" name="name" value={name} onChange={(e) => setName(e.target.value)} required />
      <input placeholder="type" name="type" value={type} onChange={(e) => setType(e.target.value)} />
      <input placeholder="labels: site=a, floor=2" name="labels" value={labels} onChange={(e) => setLabels(e.target.value)} />
      <button type="submit">Create device</button>
      {error && <span className="error">{error}</span>}
    </form>
  );
}

/** Every device of the tenant, with status kept live by WatchDevices. */
export function DevicesPage() {
  const [devices, setDevices] = useState<Map<string, Device>>(new Map());
  const [error, setError] = useState('');
  const [live, setLive] = useState(false);
  const [credential, setCredential] = useState<DeviceCredential | undefined>();

  useEffect(() => {
    const abort = new AbortController();
    (async () => {
      try {
        const all = new Map<string, Device>();
        let pageToken = '';
        do {
          const res = await api.devices.listDevices({ page: { pageSize: 200, pageToken } }, { signal: abort.signal });
          res.devices.forEach((d) => all.set(d.id, d));
          pageToken = res.page?.nextPageToken ?? '';
        } while (pageToken);
        setDevices(all);
      } catch (err) {
        if (!abort.signal.aborted) setError(errorMessage(err));
      }
    })();
    void followStream(
      (signal) => api.devices.watchDevices({}, { signal }),
      (event) => {
        const device = event.device;
        if (!device) return;
        setDevices((prev) => {
          const next = new Map(prev);
          if (event.type === DeviceEventType.DELETED) next.delete(device.id);
          else next.set(device.id, device);
          return next;
        });
      },
      abort.signal,
      setLive,
    );
    return () => abort.abort();
  }, []);

  const sorted = [...devices.values()].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <section>
      <h1>
        Devices <span className={`live-dot ${live ? 'on' : ''}`} title={live ? 'live updates' : 'reconnecting'} />
      </h1>
      <CreateDeviceForm
        onCreated={(device, issued) => {
          setDevices((prev) => new Map(prev).set(device.id, device));
          setCredential(issued);
        }}
      />
      {credential && <CredentialPanel credential={credential} onClose={() => setCredential(undefined)} />}
      {error && <p className="error">{error}</p>}
      <table data-testid="device-list">
        <thead>
          <tr>
            <th>Name</th>
            <th>Type</th>
            <th>Status</th>
            <th>Last seen</th>
            <th>Labels</th>
          </tr>
        </thead>
        <tbody>
          {sorted.map((d) => (
            <tr key={d.id} data-testid={`device-row-${d.id}`}>
              <td>
                <a href={`#/devices/${encodeURIComponent(d.id)}`}>{d.name || d.id}</a>
              </td>
              <td>{d.type}</td>
              <td>
                <StatusBadge device={d} />
              </td>
              <td>{formatTime(d.lastSeenTime)}</td>
              <td>
                {Object.entries(d.labels)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(', ')}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {sorted.length === 0 && !error && <p className="muted">No devices yet.</p>}
    </section>
  );
}
