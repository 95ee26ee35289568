import { FormEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { Link, useLocation } from 'react-router';
import { Code, ConnectError } from '@connectrpc/connect';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { JsonObject } from '@bufbuild/protobuf';
import { Command, CommandStatus } from '../../../gen/es/iot/device/v1/command_pb';
import { CredentialState, Device, DeviceCredential, DeviceEventType } from '../../../gen/es/iot/device/v1/device_pb';
import type { CommandDefinition, DeviceType } from '../../../gen/es/iot/device/v1/device_types_pb';
import { DeviceSession } from '../../../gen/es/iot/device/v1/sessions_pb';
import { Twin } from '../../../gen/es/iot/device/v1/twin_pb';
import { Aggregation, DataPoint } from '../../../gen/es/iot/monitoring/v1/telemetry_pb';
import { TableHead } from './components/table-head';
import { api, errorMessage, followStream } from './api';
import { CredentialPanel, StatusBadge } from './devices';
import { epochSeconds, formatTime, pretty } from './format';
import { useAbilities } from './principal';
import { SchemaFields } from './schema-form';
import { TimeChart, toChartData } from './time-chart';

/** Live points kept per metric (the longest range the picker offers that still updates live). */
const LIVE_KEEP_SECONDS = 24 * 3600;

/** Pixels per history bucket: the server is asked for as many buckets as the chart can show. */
const PIXELS_PER_POINT = 3;

/** A numeric point of one metric, as a chart line's sample (the metric is the line). */
interface Sample {
  time: number;
  series: string;
  value: number;
}

/** A value as people read it: booleans as true/false, strings as they are. */
export function displayValue(point: DataPoint | undefined): string {
  const kind = point?.value?.kind;
  if (!kind || kind.case === undefined) return '—';
  if (kind.case === 'boolValue') return kind.value ? 'true' : 'false';
  if (kind.case === 'stringValue') return kind.value;
  return String(kind.value);
}

function numericValue(point: DataPoint): number | undefined {
  const kind = point.value?.kind;
  if (kind?.case === 'numberValue') return kind.value;
  if (kind?.case === 'boolValue') return kind.value ? 1 : 0;
  return undefined;
}

const RANGES = [
  { label: '15 min', seconds: 15 * 60 },
  { label: '1 h', seconds: 3600 },
  { label: '6 h', seconds: 6 * 3600 },
  { label: '24 h', seconds: 24 * 3600 },
  { label: '7 d', seconds: 7 * 24 * 3600 },
];

/** The shown window: a range ending now (live), or a zoomed stretch (history only). */
type Window = { kind: 'recent'; seconds: number } | { kind: 'zoom'; start: number; end: number };

function windowBounds(w: Window, now: number): [number, number] {
  return w.kind === 'recent' ? [now - w.seconds, now] : [w.start, w.end];
}

/** One metric's chart: stored buckets for the window and, while it ends now, the live points on the same axis. */
function MetricChart({ deviceId, metric, unit, window, live, reload, onZoom }: { deviceId: string; metric: string; unit: string; window: Window; live: Sample[]; reload: number; onZoom: (start: number, end: number) => void }) {
  const [history, setHistory] = useState<Sample[]>([]);
  const [bucket, setBucket] = useState('');
  const [error, setError] = useState('');
  const [loaded, setLoaded] = useState(false);
  const [width, setWidth] = useState(0);
  const [now, setNow] = useState(Date.now() / 1000);
  const [asked, setAsked] = useState<{ start: number; end: number; maxPoints: number } | undefined>();
  const onWidth = useCallback((w: number) => setWidth((old) => (Math.abs(old - w) > 20 ? w : old)), []);

  useEffect(() => {
    if (width === 0) return;
    const abort = new AbortController();
    const [start, end] = windowBounds(window, Date.now() / 1000);
    const maxPoints = Math.max(10, Math.floor(width / PIXELS_PER_POINT));
    setNow(end);
    setAsked({ start, end, maxPoints });
    api.telemetry
      .queryHistory(
        { deviceId, metrics: [metric], timeRange: { start: timestampFromMs(Math.floor(start * 1000)), end: timestampFromMs(Math.ceil(end * 1000)) }, maxPoints, aggregations: [Aggregation.AVG] },
        { signal: abort.signal },
      )
      .then((res) => {
        setError('');
        setBucket(res.bucketWidth ? `${res.bucketWidth.seconds}s buckets` : '');
        setHistory(res.series.flatMap((s) => s.buckets.map((b) => ({ time: epochSeconds(b.startTime), series: metric, value: b.value }))));
        setLoaded(true);
      })
      .catch((err) => !abort.signal.aborted && setError(errorMessage(err)));
    return () => abort.abort();
  }, [deviceId, metric, window, width, reload]);

  const [start, end] = window.kind === 'recent' ? [Math.max(now, ...live.map((s) => s.time)) - window.seconds, Math.max(now, ...live.map((s) => s.time))] : [window.start, window.end];
  const shownLive = window.kind === 'recent' ? live.filter((s) => s.time >= start) : [];
  const newestHistory = history.reduce((t, s) => Math.max(t, s.time), -Infinity);
  // Live points newer than the last stored bucket continue the line; older ones are already in the buckets.
  const data = useMemo(() => toChartData([...history, ...shownLive.filter((s) => s.time > newestHistory)]), [history, shownLive, newestHistory]);
  const empty = loaded && data.columns[0].length === 0;
  return (
    <div className="card" data-testid={`metric-${metric}`}>
      <h3>
        {metric} {unit && <span className="muted">({unit})</span>} <span className="muted small">{bucket}</span>
      </h3>
      {error && <p className="error" role="alert">{error}</p>}
      <TimeChart
        data={data}
        height={180}
        testId={`metric-chart-${metric}`}
        xRange={[start, end]}
        yLabel={unit || undefined}
        onZoom={onZoom}
        onWidth={onWidth}
        attributes={{ 'history-points': history.length, 'live-points': shownLive.length, 'asked-start': asked?.start ?? '', 'asked-end': asked?.end ?? '', 'asked-max-points': asked?.maxPoints ?? '' }}
      />
      {empty && (
        <p className="muted" data-testid={`metric-empty-${metric}`}>
          No data for {metric} in this range.
        </p>
      )}
    </div>
  );
}

/**
 * Every metric of the device: the newest value of each (strings and booleans
 * as they are), one chart per numeric metric (small multiples, each on its
 * own axis), a range picker and drag-to-zoom, live points on the same axis.
 */
function TelemetryPanel({ deviceId, deviceType }: { deviceId: string; deviceType: DeviceType | undefined }) {
  const units = useMemo(() => new Map((deviceType?.metrics ?? []).filter((m) => m.unit).map((m) => [m.name, m.unit])), [deviceType]);
  const [latest, setLatest] = useState<Map<string, DataPoint>>(new Map());
  const [live, setLive] = useState<Map<string, Sample[]>>(new Map());
  const [connected, setConnected] = useState(false);
  const [window, setWindow] = useState<Window>({ kind: 'recent', seconds: 3600 });
  const [reload, setReload] = useState(0);
  const [error, setError] = useState('');
  const lastRecent = useRef(3600);

  useEffect(() => {
    const abort = new AbortController();
    api.telemetry
      .getLatest({ deviceIds: [deviceId] }, { signal: abort.signal })
      .then((res) => setLatest((prev) => new Map([...res.points.map((p) => [p.metric, p] as const), ...prev])))
      .catch((err) => !abort.signal.aborted && setError(errorMessage(err)));
    void followStream(
      (signal) => api.telemetry.streamLive({ deviceIds: [deviceId] }, { signal }),
      (res) => {
        if (res.points.length === 0) return;
        setLatest((prev) => {
          const next = new Map(prev);
          for (const p of res.points) {
            const known = next.get(p.metric);
            if (!known?.time || epochSeconds(known.time) <= epochSeconds(p.time)) next.set(p.metric, p);
          }
          return next;
        });
        setLive((prev) => {
          const next = new Map(prev);
          const cutoff = Date.now() / 1000 - LIVE_KEEP_SECONDS;
          for (const p of res.points) {
            const value = numericValue(p);
            if (value === undefined) continue;
            next.set(p.metric, [...(next.get(p.metric) ?? []).filter((s) => s.time >= cutoff), { time: epochSeconds(p.time), series: p.metric, value }]);
          }
          return next;
        });
      },
      abort.signal,
      setConnected,
    );
    return () => abort.abort();
  }, [deviceId]);

  const metrics = [...latest.keys()].sort();
  const charted = metrics.filter((m) => latest.get(m)?.value?.kind.case === 'numberValue');
  // Whole milliseconds: a Timestamp's nanos must be an integer.
  const zoom = useCallback((start: number, end: number) => setWindow({ kind: 'zoom', start: Math.floor(start * 1000) / 1000, end: Math.ceil(end * 1000) / 1000 }), []);
  return (
    <div className="card">
      <h2>
        Telemetry <span className={`live-dot ${connected ? 'on' : ''}`} title={connected ? 'live' : 'reconnecting'} />
      </h2>
      {error && <p className="error" role="alert">{error}</p>}
      <ul className="latest" data-testid="live-latest">
        {metrics.map((m) => (
          <li key={m}>
            {m}: <strong data-testid={`live-value-${m}`}>{displayValue(latest.get(m))}</strong>
            {units.get(m) && <span className="muted"> {units.get(m)}</span>}
          </li>
        ))}
        {metrics.length === 0 && <li className="muted">Waiting for telemetry…</li>}
      </ul>
      <div className="ranges" role="group" aria-label="range">
        {RANGES.map((r) => (
          <button
            key={r.label}
            className={window.kind === 'recent' && window.seconds === r.seconds ? 'selected' : ''}
            aria-pressed={window.kind === 'recent' && window.seconds === r.seconds}
            onClick={() => {
              lastRecent.current = r.seconds;
              setWindow({ kind: 'recent', seconds: r.seconds });
            }}
          >
            {r.label}
          </button>
        ))}
        {window.kind === 'zoom' && (
          <button className="secondary" onClick={() => setWindow({ kind: 'recent', seconds: lastRecent.current })} data-testid="zoom-reset">
            Back to live
          </button>
        )}
        <button onClick={() => setReload((n) => n + 1)}>Refresh</button>
        <span className="muted" data-testid="window">
          {window.kind === 'zoom' ? `${new Date(window.start * 1000).toLocaleString()} – ${new Date(window.end * 1000).toLocaleString()}` : 'drag across a chart to zoom'}
        </span>
      </div>
      <div className="charts">
        {charted.map((m) => (
          <MetricChart key={m} deviceId={deviceId} metric={m} unit={units.get(m) ?? ''} window={window} live={live.get(m) ?? []} reload={reload} onZoom={zoom} />
        ))}
      </div>
    </div>
  );
}

/** The device's connections as the NATS server reported them, newest first, a page at a time. */
function SessionsCard({ deviceId, reload }: { deviceId: string; reload: unknown }) {
  const [sessions, setSessions] = useState<DeviceSession[]>([]);
  const [next, setNext] = useState('');
  const [error, setError] = useState('');
  async function load(pageToken: string) {
    try {
      const res = await api.sessions.listDeviceSessions({ deviceId, page: { pageSize: 20, pageToken } });
      setSessions((prev) => (pageToken ? [...prev, ...res.sessions] : res.sessions));
      setNext(res.page?.nextPageToken ?? '');
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  useEffect(() => {
    void load('');
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [deviceId, reload]);
  return (
    <div className="card" data-testid="sessions-card">
      <h2>Connections</h2>
      {error && <p className="error" role="alert">{error}</p>}
      {sessions.length === 0 && !error ? (
        <p className="muted">Never connected.</p>
      ) : (
        <table data-testid="session-list">
          <TableHead columns={['Connected', 'Disconnected', 'Reason', 'From', 'Client']} />
          <tbody>
            {sessions.map((x) => (
              <tr key={`${x.serverId}/${x.clientId}/${x.connectTime?.seconds ?? ''}`}>
                <td>{formatTime(x.connectTime)}</td>
                <td>{x.disconnectTime ? formatTime(x.disconnectTime) : <strong>connected</strong>}</td>
                <td>{x.disconnectReason}</td>
                <td>{x.remoteAddress}</td>
                <td>{x.clientName}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && <button onClick={() => void load(next)}>More</button>}
    </div>
  );
}

/** The device's type (undefined without one, or while loading). */
function useDeviceType(deviceTypeId: string | undefined): DeviceType | undefined {
  const [type, setType] = useState<DeviceType | undefined>();
  useEffect(() => {
    if (!deviceTypeId) return;
    const abort = new AbortController();
    api.deviceTypes
      .getDeviceType({ id: deviceTypeId }, { signal: abort.signal })
      .then((res) => setType(res.deviceType))
      // Without its type the page still works: no units, no generated forms.
      .catch(() => undefined);
    return () => abort.abort();
  }, [deviceTypeId]);
  return type;
}

/** Issue, rotate and revoke the device's MQTT/NATS credential; a new token is shown once. */
function CredentialsCard({ device, onChanged }: { device: Device; onChanged: () => void }) {
  const { canOperate } = useAbilities();
  const [issued, setIssued] = useState<DeviceCredential | undefined>();
  const [error, setError] = useState('');
  const state = device.credentialState;
  async function run(action: () => Promise<{ credential?: DeviceCredential }>) {
    setError('');
    try {
      const res = await action();
      setIssued(res.credential);
      onChanged();
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <div className="card" data-testid="credentials-card">
      <h2>Credential</h2>
      <p>
        State: <strong data-testid="credential-state">{CredentialState[state]?.toLowerCase() ?? 'unknown'}</strong>
      </p>
      {canOperate && (
        <div className="inline-form">
          {state !== CredentialState.ACTIVE && <button onClick={() => void run(() => api.credentials.issueCredential({ deviceId: device.id }))}>Issue credential</button>}
          {state === CredentialState.ACTIVE && <button onClick={() => void run(() => api.credentials.rotateCredential({ deviceId: device.id }))}>Rotate credential</button>}
          {state === CredentialState.ACTIVE && (
            <button className="danger" onClick={() => void run(async () => (await api.credentials.revokeCredential({ deviceId: device.id }), {}))}>
              Revoke credential
            </button>
          )}
        </div>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      {issued && <CredentialPanel credential={issued} onClose={() => setIssued(undefined)} />}
    </div>
  );
}

/** Desired and reported state; desired is editable as JSON. */
function TwinPanel({ deviceId, desiredSchema }: { deviceId: string; desiredSchema: JsonObject | undefined }) {
  const { canOperate } = useAbilities();
  const [twin, setTwin] = useState<Twin | undefined>();
  const [draft, setDraft] = useState('{}');
  const [message, setMessage] = useState('');

  async function load() {
    try {
      const res = await api.twins.getTwin({ deviceId });
      setTwin(res.twin);
      setDraft(pretty(res.twin?.desired ?? {}));
    } catch (err) {
      setMessage(errorMessage(err));
    }
  }
  useEffect(() => {
    void load();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [deviceId]);

  async function save(event: FormEvent) {
    event.preventDefault();
    setMessage('');
    let desired: JsonObject;
    try {
      desired = JSON.parse(draft) as JsonObject;
    } catch (err) {
      setMessage(`not JSON: ${(err as Error).message}`);
      return;
    }
    try {
      const res = await api.twins.updateDesired({ deviceId, desired, expectedVersion: twin?.desiredVersion ?? 0n });
      setTwin(res.twin);
      setMessage(`saved as version ${res.twin?.desiredVersion ?? '?'}`);
    } catch (err) {
      setMessage(errorMessage(err));
    }
  }

  return (
    <div className="card">
      <h2>Twin</h2>
      <div className="twin">
        <form onSubmit={save}>
          <h3>Desired (v{String(twin?.desiredVersion ?? 0n)})</h3>
          <SchemaFields schema={desiredSchema} text={draft} onChange={setDraft} disabled={!canOperate} testId="desired-fields" />
          <textarea value={draft} onChange={(e) => setDraft(e.target.value)} rows={8} data-testid="desired-editor" aria-label="desired state (JSON)" readOnly={!canOperate} />
          {canOperate && <button type="submit">Save desired</button>}
        </form>
        <div>
          <h3>Reported (v{String(twin?.reportedVersion ?? 0n)})</h3>
          <pre data-testid="reported">{pretty(twin?.reported)}</pre>
          <p className="muted">updated {formatTime(twin?.reportedUpdateTime)}</p>
          <button onClick={() => void load()}>Reload</button>
        </div>
      </div>
      {message && <p className="muted" role="status">{message}</p>}
    </div>
  );
}

/** Sends a command and shows the device's reply (or why there was none). */
function CommandPanel({ deviceId, commands }: { deviceId: string; commands: CommandDefinition[] }) {
  const [name, setName] = useState('');
  const [payload, setPayload] = useState('{}');
  const [timeout, setTimeoutSeconds] = useState(10);
  const [busy, setBusy] = useState(false);
  const [reply, setReply] = useState<Command | undefined>();
  const [error, setError] = useState('');

  async function send(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError('');
    setReply(undefined);
    try {
      let parsed: JsonObject;
      try {
        parsed = JSON.parse(payload) as JsonObject;
      } catch (err) {
        throw new Error(`payload is not JSON: ${(err as Error).message}`);
      }
      const res = await api.commands.sendCommand(
        { deviceId, name, payload: parsed, timeout: { seconds: BigInt(timeout), nanos: 0 } },
        { timeoutMs: (timeout + 5) * 1000 },
      );
      setReply(res.command);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="card">
      <h2>Command</h2>
      <form className="inline-form" onSubmit={send} data-testid="command-form">
        <input placeholder="name" aria-label="command name" name="command-name" list="command-names" value={name} onChange={(e) => setName(e.target.value)} required />
        <datalist id="command-names">
          {commands.map((c) => (
            <option key={c.name} value={c.name}>
              {c.description}
            </option>
          ))}
        </datalist>
        <SchemaFields schema={commands.find((c) => c.name === name)?.parametersSchema} text={payload} onChange={setPayload} testId="command-fields" />
        <input placeholder='payload {"a":1}' aria-label="command payload (JSON)" name="command-payload" value={payload} onChange={(e) => setPayload(e.target.value)} />
        <label>
          timeout s
          <input type="number" min={1} max={60} value={timeout} onChange={(e) => setTimeoutSeconds(Number(e.target.value))} />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Waiting for reply…' : 'Send'}
        </button>
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {reply && (
        <div data-testid="command-reply">
          <p>
            Status: <strong data-testid="command-status">{CommandStatus[reply.status]}</strong>
            {reply.error && <span className="error"> {reply.error}</span>}
          </p>
          <pre data-testid="command-result">{pretty(reply.result)}</pre>
        </div>
      )}
    </div>
  );
}

/** One device: details, telemetry, credential, twin and commands; an unknown id shows only why. */
export function DevicePage({ deviceId }: { deviceId: string }) {
  const [device, setDevice] = useState<Device | undefined>();
  const [error, setError] = useState<ConnectError | undefined>();
  const [reload, setReload] = useState(0);
  const deviceType = useDeviceType(device?.deviceTypeId || undefined);
  // Back to the list as it was when this device was opened from it (its filters and order are in its URL).
  const devicesList = `/devices${(useLocation().state as { devicesSearch?: string } | null)?.devicesSearch ?? ''}`;

  useEffect(() => {
    const abort = new AbortController();
    api.devices
      .getDevice({ id: deviceId }, { signal: abort.signal })
      .then((res) => setDevice(res.device))
      .catch((err) => !abort.signal.aborted && setError(ConnectError.from(err)));
    void followStream(
      (signal) => api.devices.watchDevices({ deviceIds: [deviceId] }, { signal }),
      (event) => {
        if (event.device?.id !== deviceId) return;
        if (event.type === DeviceEventType.DELETED) setError(new ConnectError(`device ${deviceId} was deleted`, Code.NotFound));
        else setDevice(event.device);
      },
      abort.signal,
    );
    return () => abort.abort();
  }, [deviceId, reload]);

  if (error) {
    return (
      <section>
        <p>
          <Link to={devicesList}>← Devices</Link>
        </p>
        <h1>{deviceId}</h1>
        <p className="error" role="alert" data-testid="device-error">
          {error.code === Code.NotFound ? `No device ${deviceId}. ` : ''}
          {errorMessage(error)}
        </p>
      </section>
    );
  }
  return (
    <section>
      <p>
        <Link to={devicesList}>← Devices</Link>
      </p>
      <h1 data-testid="device-name">
        {device?.name ?? deviceId} {device && <StatusBadge device={device} />}
      </h1>
      {device && (
        <p className="muted">
          id {device.id} · type {device.type || '—'} · last seen {formatTime(device.lastSeenTime)} · labels{' '}
          {Object.entries(device.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(', ') || '—'}
        </p>
      )}
      <TelemetryPanel deviceId={deviceId} deviceType={deviceType} />
      {device && <CredentialsCard device={device} onChanged={() => setReload((n) => n + 1)} />}
      {device && <SessionsCard deviceId={deviceId} reload={device.status} />}
      <TwinPanel deviceId={deviceId} desiredSchema={deviceType?.desiredSchema} />
      <CommandPanelGate deviceId={deviceId} commands={deviceType?.commands ?? []} />
    </section>
  );
}

/** Commands are for operators and admins only. */
function CommandPanelGate({ deviceId, commands }: { deviceId: string; commands: CommandDefinition[] }) {
  const { canOperate } = useAbilities();
  return canOperate ? <CommandPanel deviceId={deviceId} commands={commands} /> : null;
}
