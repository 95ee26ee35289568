import { FormEvent, useEffect, useMemo, useRef, useState } from 'react';
import { Link, useLocation, useNavigate, useSearchParams } from 'react-router';
import { ConfirmButton } from './components/confirm-button';
import { SecretPanel } from './components/secret-panel';
import { useVirtualizer } from '@tanstack/react-virtual';
import { CredentialKind } from '../../../gen/es/iot/device/v1/credential_pb';
import { Device, DeviceCredential, DeviceEventType, DeviceStatus } from '../../../gen/es/iot/device/v1/device_pb';
import { api, errorMessage, followStream } from './api';
import { formatTime } from './format';
import { useAbilities } from './principal';

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

/**
 * A NATS credential as a creds file (its JWT and the seed that signs the
 * server's nonce), the format nats.js `credsAuthenticator`, the `nats` CLI's
 * `--creds` and `iotctl credentials issue --creds` use.
 */
export function credsFile(credential: DeviceCredential): string {
  return [
    '-----BEGIN NATS USER JWT-----',
    credential.token,
    '------END NATS USER JWT------',
    '',
    '-----BEGIN USER NKEY SEED-----',
    credential.seed,
    '------END USER NKEY SEED------',
    '',
  ].join('\n');
}

/** Offers `text` as a file download named `name`. */
function download(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  URL.revokeObjectURL(url);
}

/** Shown once after creation: the secret is not retrievable later. */
export function CredentialPanel({ credential, onClose }: { credential: DeviceCredential; onClose: () => void }) {
  // Only a NATS credential has a seed (it is not bearer): the device needs both, so the panel offers them as a creds file.
  const nats = credential.seed !== '';
  return (
    <SecretPanel
      testId="credential"
      attributes={{ 'data-device-id': credential.deviceId, 'data-tenant-id': credential.tenantId, 'data-mqtt-url': credential.mqttUrl, 'data-nats-url': credential.natsUrl }}
      title={`Credential for ${credential.deviceId}`}
      warning={nats ? 'This token and its seed are shown once. Copy the creds file now; rotate the credential if it is lost.' : 'This token is shown once. Copy it now; rotate the credential if it is lost.'}
      label="Token"
      secret={credential.token}
      valueTestId="credential-token"
      onClose={onClose}
    >
      {nats ? (
        <>
          <label>
            Creds file (the token and the seed that signs the server&apos;s nonce; the token alone does not connect)
            <textarea readOnly value={credsFile(credential)} rows={8} data-testid="credential-creds" />
          </label>
          <button type="button" onClick={() => download(`${credential.deviceId}.creds`, credsFile(credential))}>
            Download {credential.deviceId}.creds
          </button>
        </>
      ) : (
        <label>
          Publish a test reading
          <textarea readOnly value={mosquittoPubLine(credential)} rows={4} data-testid="mosquitto-pub" />
        </label>
      )}
    </SecretPanel>
  );
}

/**
 * `site=a, floor=2` as a label map; every entry needs a key and `=` (an entry
 * without one used to be stored as `"undefined"`).
 */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const entry of text.split(',').map((e) => e.trim()).filter(Boolean)) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new Error(`label "${entry}" needs the form key=value`);
    labels[entry.slice(0, eq).trim()] = entry.slice(eq + 1).trim();
  }
  return labels;
}

function CreateDeviceForm({ onCreated }: { onCreated: (device: Device, credential: DeviceCredential | undefined) => void }) {
  const [name, setName] = useState('');
  const [type, setType] = useState('');
  const [labels, setLabels] = useState('');
  // The server refuses a credential over the other connection type.
  const [kind, setKind] = useState(CredentialKind.MQTT);
  const [error, setError] = useState('');

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError('');
    try {
      const labelMap = parseLabels(labels);
      const created = await api.devices.createDevice({ device: { name, type, labels: labelMap } });
      if (!created.device) throw new Error('no device returned');
      const issued = await api.credentials.issueCredential({ deviceId: created.device.id, kind });
      onCreated(created.device, issued.credential);
      setName('');
      setType('');
      setLabels('');
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  return (
    <form className="inline-form" onSubmit={submit} data-testid="create-device" aria-label="create device">
      <input placeholder="name" aria-label="name" name="name" value={name} onChange={(e) => setName(e.target.value)} required />
      <input placeholder="type" aria-label="type" name="type" value={type} onChange={(e) => setType(e.target.value)} />
      <input placeholder="labels: site=a, floor=2" aria-label="labels" name="labels" value={labels} onChange={(e) => setLabels(e.target.value)} />
      <select aria-label="connects over" name="kind" value={kind} onChange={(e) => setKind(Number(e.target.value) as CredentialKind)}>
        <option value={CredentialKind.MQTT}>MQTT</option>
        <option value={CredentialKind.NATS}>NATS</option>
      </select>
      <button type="submit">Create device</button>
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}

/** The list's server-side filters (ListDevices fields). */
interface Filters {
  namePrefix: string;
  type: string;
  status: DeviceStatus;
  labels: string;
}

/** A sortable column: its title and ListDevices' order_by field. */
const SORTABLE: Array<[title: string, field: string]> = [
  ['Name', 'name'],
  ['Type', 'type'],
  ['Status', 'status'],
  ['Last seen', 'last_seen_time'],
];

/** The list's order: a field of SORTABLE (empty: creation order) and its direction. */
interface Sort {
  field: string;
  desc: boolean;
}

const orderBy = (sort: Sort) => (sort.field ? `${sort.field}${sort.desc ? ' desc' : ''}` : '');

/** The status filter's word in the URL. */
const STATUS_PARAM: Array<[DeviceStatus, string]> = [
  [DeviceStatus.ONLINE, 'online'],
  [DeviceStatus.OFFLINE, 'offline'],
];

/**
 * The list's filters and order as they stand in the page's URL
 * (`#/devices?name=pump&labels=site%3Da&status=online&order=name+desc`), so
 * going back from a device, reloading or sharing the link shows the same list.
 */
function listFromParams(params: URLSearchParams): { filters: Filters; sort: Sort } {
  const status = STATUS_PARAM.find(([, word]) => word === params.get('status'))?.[0] ?? DeviceStatus.UNSPECIFIED;
  const [field = '', direction] = (params.get('order') ?? '').split(' ');
  const sortable = SORTABLE.some(([, f]) => f === field);
  return {
    filters: { namePrefix: params.get('name') ?? '', type: params.get('type') ?? '', status, labels: params.get('labels') ?? '' },
    sort: { field: sortable ? field : '', desc: sortable && direction === 'desc' },
  };
}

/** The URL parameters of {@link listFromParams} for these filters and order (empty ones left out). */
function listToParams(filters: Filters, sort: Sort): URLSearchParams {
  const params = new URLSearchParams();
  const status = STATUS_PARAM.find(([s]) => s === filters.status)?.[1];
  for (const [key, value] of [['name', filters.namePrefix], ['type', filters.type], ['labels', filters.labels], ['status', status], ['order', orderBy(sort)]] as const) {
    if (value) params.set(key, value);
  }
  return params;
}

/** Header cell of a sortable column: pressing it sorts by it, again reverses; aria-sort says the state. */
function SortHeader({ title, field, sort, onSort }: { title: string; field: string; sort: Sort; onSort: (s: Sort) => void }) {
  const active = sort.field === field;
  return (
    <span role="columnheader" aria-sort={active ? (sort.desc ? 'descending' : 'ascending') : 'none'}>
      <button type="button" className="link" data-testid={`sort-${field}`} onClick={() => onSort({ field, desc: active ? !sort.desc : false })}>
        {title} {active ? (sort.desc ? '▼' : '▲') : ''}
      </button>
    </span>
  );
}

/**
 * What an operator can do to the selected devices with the API as it is:
 * add a label (UpdateDevice, merged into each device's labels), start a job
 * on them (the jobs page with the ids filled in), delete them.
 */
function BulkActions({ selected, rows, onDone }: { selected: Set<string>; rows: Device[]; onDone: (changed: Device[], deleted: string[]) => void }) {
  const [label, setLabel] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState('');
  const navigate = useNavigate();
  const ids = [...selected];

  async function each(what: string, run: (id: string) => Promise<Device | undefined>) {
    setError('');
    const changed: Device[] = [];
    const deleted: string[] = [];
    const failures: string[] = [];
    for (const [i, id] of ids.entries()) {
      setBusy(`${what} ${i + 1}/${ids.length}…`);
      try {
        const device = await run(id);
        if (device) changed.push(device);
        else deleted.push(id);
      } catch (err) {
        failures.push(`${id}: ${errorMessage(err)}`);
      }
    }
    setBusy('');
    if (failures.length > 0) setError(failures.join('; '));
    onDone(changed, deleted);
  }

  async function addLabel(e: FormEvent) {
    e.preventDefault();
    let labels: Record<string, string>;
    try {
      labels = parseLabels(label);
    } catch (err) {
      setError(errorMessage(err));
      return;
    }
    const byId = new Map(rows.map((d) => [d.id, d]));
    await each('labelling', async (id) => {
      const res = await api.devices.updateDevice({ device: { id, labels: { ...byId.get(id)?.labels, ...labels } }, updateMask: { paths: ['labels'] } });
      return res.device;
    });
    setLabel('');
  }

  return (
    <div className="card inline-form" data-testid="bulk-actions" role="group" aria-label="bulk actions">
      <strong>{ids.length.toLocaleString()} selected</strong>
      <form className="inline-form" onSubmit={addLabel} aria-label="add label to selected">
        <input placeholder="label key=value" aria-label="label to add" name="bulkLabel" value={label} onChange={(e) => setLabel(e.target.value)} required />
        <button type="submit">Add label</button>
      </form>
      <button type="button" onClick={() => void navigate(`/jobs?devices=${encodeURIComponent(ids.join(','))}`)}>
        Start a job…
      </button>
      <ConfirmButton label="Delete selected" testId="bulk-delete" question={`Delete ${ids.length} device${ids.length === 1 ? '' : 's'} and revoke their credentials?`} onConfirm={() => each('deleting', async (id) => void (await api.devices.deleteDevice({ id })))} />
      {busy && <span className="muted">{busy}</span>}
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </div>
  );
}

const PAGE_SIZE = 200;
const ROW_HEIGHT = 36;

function matches(device: Device, filters: Filters, labels: Record<string, string>): boolean {
  if (filters.namePrefix && !device.name.startsWith(filters.namePrefix)) return false;
  if (filters.type && device.type !== filters.type) return false;
  if (filters.status !== DeviceStatus.UNSPECIFIED && device.status !== filters.status) return false;
  return Object.entries(labels).every(([k, v]) => device.labels[k] === v);
}

/**
 * The tenant's devices, filtered, sorted and counted by the server, loaded a
 * page at a time as the list scrolls (page tokens), rows virtualised so
 * 100,000 devices stay smooth, statuses kept live by WatchDevices (changes
 * only: the pages are the snapshot); bulk actions on the selected rows.
 */
export function DevicesPage() {
  const { canOperate } = useAbilities();
  const [params, setParams] = useSearchParams();
  const fromUrl = listFromParams(params);
  // The same objects while the list stays the same, so the loading effect runs when it changes, not on every render.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const { filters, sort } = useMemo(() => fromUrl, [listToParams(fromUrl.filters, fromUrl.sort).toString()]);
  const [draft, setDraft] = useState<Filters>(filters);
  useEffect(() => setDraft(filters), [filters]);
  const setFilters = (next: Filters) => setParams(listToParams(next, sort));
  const setSort = (next: Sort) => setParams(listToParams(filters, next));
  const location = useLocation();
  const [rows, setRows] = useState<Device[]>([]);
  const [nextToken, setNextToken] = useState<string | undefined>('');
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState('');
  const [live, setLive] = useState(false);
  const [credential, setCredential] = useState<DeviceCredential | undefined>();
  const [total, setTotal] = useState<number | undefined>();
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const scroller = useRef<HTMLDivElement>(null);
  const generation = useRef(0);

  let labelFilter: Record<string, string> = {};
  let filterError = '';
  try {
    labelFilter = parseLabels(filters.labels);
  } catch (err) {
    filterError = (err as Error).message;
  }

  const serverFilter = () => ({ namePrefix: filters.namePrefix, type: filters.type, status: filters.status, labels: labelFilter });

  async function loadPage(token: string, gen: number) {
    setLoading(true);
    try {
      const res = await api.devices.listDevices({ page: { pageSize: PAGE_SIZE, pageToken: token }, orderBy: orderBy(sort), ...serverFilter() });
      if (gen !== generation.current) return;
      setRows((prev) => (token === '' ? res.devices : [...prev, ...res.devices.filter((d) => !prev.some((p) => p.id === d.id))]));
      setNextToken(res.page?.nextPageToken || undefined);
    } catch (err) {
      if (gen === generation.current) setError(errorMessage(err));
    } finally {
      if (gen === generation.current) setLoading(false);
    }
  }

  useEffect(() => {
    const gen = ++generation.current;
    setRows([]);
    setError('');
    setNextToken('');
    setSelected(new Set());
    setTotal(undefined);
    const abort = new AbortController();
    if (!filterError) {
      void loadPage('', gen);
      api.devices.countDevices(serverFilter(), { signal: abort.signal }).then(
        (res) => gen === generation.current && setTotal(Number(res.count)),
        () => undefined,
      );
    }
    void followStream(
      (signal) => api.devices.watchDevices({ labels: labelFilter, changesOnly: true }, { signal }),
      (event) => {
        const device = event.device;
        if (!device) return;
        setRows((prev) => {
          const at = prev.findIndex((d) => d.id === device.id);
          if (event.type === DeviceEventType.DELETED) return at < 0 ? prev : prev.filter((d) => d.id !== device.id);
          if (!matches(device, filters, labelFilter)) return at < 0 ? prev : prev.filter((d) => d.id !== device.id);
          // A new device goes on top in creation order; in a sorted list it shows when its page loads.
          if (at < 0) return event.type === DeviceEventType.CREATED && !sort.field ? [device, ...prev] : prev;
          const next = [...prev];
          next[at] = device;
          return next;
        });
      },
      abort.signal,
      setLive,
    );
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [filters, sort]);

  const virtualizer = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW_HEIGHT, overscan: 10 });
  const items = virtualizer.getVirtualItems();
  const last = items.at(-1);
  useEffect(() => {
    // Near the end of what is loaded: fetch the next page.
    if (last && last.index >= rows.length - 20 && nextToken && !loading) void loadPage(nextToken, generation.current);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [last?.index, rows.length, nextToken, loading]);

  return (
    <section>
      <h1>
        Devices <span className={`live-dot ${live ? 'on' : ''}`} title={live ? 'live updates' : 'reconnecting'} />
      </h1>
      {canOperate && (
        <CreateDeviceForm
          onCreated={(device, issued) => {
            setRows((prev) => [device, ...prev.filter((d) => d.id !== device.id)]);
            setCredential(issued);
          }}
        />
      )}
      {credential && <CredentialPanel credential={credential} onClose={() => setCredential(undefined)} />}
      {canOperate && selected.size > 0 && (
        <BulkActions
          selected={selected}
          rows={rows}
          onDone={(changed, deleted) => {
            const byId = new Map(changed.map((d) => [d.id, d]));
            const gone = new Set(deleted);
            setRows((prev) => prev.filter((d) => !gone.has(d.id)).map((d) => byId.get(d.id) ?? d));
            if (deleted.length > 0) setTotal((n) => (n === undefined ? n : n - deleted.length));
            setSelected(new Set());
          }}
        />
      )}
      <form
        className="inline-form"
        data-testid="device-filters"
        aria-label="filter devices"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters(draft);
        }}
      >
        <input placeholder="name starts with" aria-label="name starts with" name="namePrefix" value={draft.namePrefix} onChange={(e) => setDraft({ ...draft, namePrefix: e.target.value })} />
        <input placeholder="type" aria-label="filter type" name="filterType" value={draft.type} onChange={(e) => setDraft({ ...draft, type: e.target.value })} />
        <input placeholder="labels site=a" aria-label="filter labels" name="filterLabels" value={draft.labels} onChange={(e) => setDraft({ ...draft, labels: e.target.value })} />
        <select aria-label="status" name="status" value={draft.status} onChange={(e) => setDraft({ ...draft, status: Number(e.target.value) as DeviceStatus })}>
          <option value={DeviceStatus.UNSPECIFIED}>any status</option>
          <option value={DeviceStatus.ONLINE}>online</option>
          <option value={DeviceStatus.OFFLINE}>offline</option>
        </select>
        <button type="submit">Filter</button>
      </form>
      {(error || filterError) && (
        <p className="error" role="alert">
          {error || filterError}
        </p>
      )}
      {/* Rows are virtualised: aria-rowcount and each row's aria-rowindex (the header is row 1) tell assistive technology where a row sits in the whole list. */}
      <div className="device-table" role="table" aria-label="devices" aria-rowcount={total === undefined ? -1 : total + 1} data-testid="device-list" data-rows={rows.length}>
        <div className={`device-row head${canOperate ? ' selectable' : ''}`} role="row" aria-rowindex={1}>
          {canOperate && (
            <span role="columnheader">
              <input
                type="checkbox"
                aria-label="select all loaded"
                checked={rows.length > 0 && selected.size === rows.length}
                onChange={(e) => setSelected(e.target.checked ? new Set(rows.map((d) => d.id)) : new Set())}
              />
            </span>
          )}
          {SORTABLE.map(([title, field]) => (
            <SortHeader key={field} title={title} field={field} sort={sort} onSort={setSort} />
          ))}
          <span role="columnheader">Labels</span>
        </div>
        <div className="device-scroll" ref={scroller}>
          <div style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
            {items.map((item) => {
              const d = rows[item.index];
              return (
                <div key={d.id} className={`device-row${canOperate ? ' selectable' : ''}`} role="row" aria-rowindex={item.index + 2} data-testid={`device-row-${d.id}`} style={{ position: 'absolute', top: 0, left: 0, right: 0, height: ROW_HEIGHT, transform: `translateY(${item.start}px)` }}>
                  {canOperate && (
                    <span role="cell">
                      <input
                        type="checkbox"
                        aria-label={`select ${d.name || d.id}`}
                        data-testid={`select-${d.id}`}
                        checked={selected.has(d.id)}
                        onChange={(e) =>
                          setSelected((prev) => {
                            const next = new Set(prev);
                            if (e.target.checked) next.add(d.id);
                            else next.delete(d.id);
                            return next;
                          })
                        }
                      />
                    </span>
                  )}
                  <span role="cell">
                    <Link to={`/devices/${encodeURIComponent(d.id)}`} state={{ devicesSearch: location.search }}>{d.name || d.id}</Link>
                  </span>
                  <span role="cell">{d.type}</span>
                  <span role="cell">
                    <StatusBadge device={d} />
                  </span>
                  <span role="cell">{formatTime(d.lastSeenTime)}</span>
                  <span role="cell">
                    {Object.entries(d.labels)
                      .map(([k, v]) => `${k}=${v}`)
                      .join(', ')}
                  </span>
                </div>
              );
            })}
          </div>
        </div>
      </div>
      <p className="muted" data-testid="device-count">
        {rows.length.toLocaleString()} shown{total !== undefined ? ` of ${total.toLocaleString()}` : ''}
        {nextToken ? ', more as you scroll' : ''}
        {loading ? ' · loading…' : ''}
      </p>
      {rows.length === 0 && !loading && !error && <p className="muted">No devices match.</p>}
    </section>
  );
}
