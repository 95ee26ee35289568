import { FormEvent, useEffect, useMemo, useState } from 'react';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { JsonObject } from '@bufbuild/protobuf';
import { Command, CommandStatus } from '../../../gen/es/iot/device/v1/command_pb';
import { Device, DeviceEventType } from '../../../gen/es/iot/device/v1/device_pb';
import { Twin } from '../../../gen/es/iot/device/v1/twin_pb';
import { Aggregation, DataPoint } from '../../../gen/es/iot/monitoring/v1/telemetry_pb';
import { api, errorMessage, followStream } from './api';
import { StatusBadge } from './devices';
import { epochSeconds, formatTime, pretty } from './format';
import { TimeChart, toChartData } from './time-chart';

/** How much live data the chart keeps. */
const LIVE_WINDOW_SECONDS = 300;

interface Sample {
  time: number;
  metric: string;
  value: number;
}

function numericValue(point: DataPoint): number | undefined {
  const kind = point.value?.kind;
  if (kind?.case === 'numberValue') return kind.value;
  if (kind?.case === 'boolValue') return kind.value ? 1 : 0;
  return undefined;
}

const ALL = '';

/** Chooses which metric a chart draws: lines of very different scales (hPa next to °C) flatten each other. */
function MetricPicker({ metrics, value, onChange }: { metrics: string[]; value: string; onChange: (metric: string) => void }) {
  return (
    <select value={value} onChange={(e) => onChange(e.target.value)} aria-label="metric">
      <option value={ALL}>all metrics</option>
      {metrics.map((m) => (
        <option key={m} value={m}>
          {m}
        </option>
      ))}
    </select>
  );
}

/** The metric shown unless the user picks another: temperature when there is one, else the first. */
function useMetricChoice(metrics: string[]): [string, (metric: string) => void] {
  const [picked, setPicked] = useState<string | undefined>(undefined);
  const fallback = metrics.includes('temperature') ? 'temperature' : (metrics[0] ?? ALL);
  return [picked ?? fallback, setPicked];
}

/** The live window: the last minute at least, up to LIVE_WINDOW_SECONDS, ending now or at the newest sample. */
function liveRange(samples: Sample[]): [number, number] {
  const newest = Math.max(Date.now() / 1000, ...samples.map((s) => s.time));
  const oldest = Math.min(newest - 60, ...samples.map((s) => s.time));
  return [Math.max(oldest, newest - LIVE_WINDOW_SECONDS), newest];
}

/** Points pushed by StreamLive as they arrive at the platform. */
function LiveChart({ deviceId }: { deviceId: string }) {
  const [samples, setSamples] = useState<Sample[]>([]);
  const [connected, setConnected] = useState(false);

  useEffect(() => {
    const abort = new AbortController();
    void followStream(
      (signal) => api.telemetry.streamLive({ deviceIds: [deviceId] }, { signal }),
      (res) => {
        const fresh = res.points.flatMap((p) => {
          const value = numericValue(p);
          return value === undefined ? [] : [{ time: epochSeconds(p.time), metric: p.metric, value }];
        });
        if (fresh.length === 0) return;
        setSamples((prev) => {
          const cutoff = Date.now() / 1000 - LIVE_WINDOW_SECONDS;
          return [...prev, ...fresh].filter((s) => s.time >= cutoff);
        });
      },
      abort.signal,
      setConnected,
    );
    return () => abort.abort();
  }, [deviceId]);

  const metrics = useMemo(() => [...new Set(samples.map((s) => s.metric))].sort(), [samples]);
  const [metric, setMetric] = useMetricChoice(metrics);
  const data = useMemo(() => toChartData(metric === ALL ? samples : samples.filter((s) => s.metric === metric)), [samples, metric]);
  const latest = new Map<string, Sample>();
  for (const s of samples) if ((latest.get(s.metric)?.time ?? -Infinity) <= s.time) latest.set(s.metric, s);

  return (
    <div className="card">
      <h2>
        Live <span className={`live-dot ${connected ? 'on' : ''}`} />
      </h2>
      <MetricPicker metrics={metrics} value={metric} onChange={setMetric} />
      <TimeChart data={data} testId="live-chart" xRange={liveRange(samples)} />
      <ul className="latest" data-testid="live-latest">
        {[...latest.values()].map((s) => (
          <li key={s.metric}>
            {s.metric}: <strong data-testid={`live-value-${s.metric}`}>{s.value}</strong>
          </li>
        ))}
        {latest.size === 0 && <li className="muted">Waiting for telemetry…</li>}
      </ul>
    </div>
  );
}

const RANGES = [
  { label: '15 min', seconds: 15 * 60 },
  { label: '1 h', seconds: 3600 },
  { label: '6 h', seconds: 6 * 3600 },
  { label: '24 h', seconds: 24 * 3600 },
  { label: '7 d', seconds: 7 * 24 * 3600 },
];

/** Stored telemetry, bucketed by the server to at most a few hundred points. */
function HistoryChart({ deviceId }: { deviceId: string }) {
  const [range, setRange] = useState(RANGES[1]);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [bucket, setBucket] = useState('');
  const [span, setSpan] = useState<[number, number]>([Date.now() / 1000 - range.seconds, Date.now() / 1000]);
  const [error, setError] = useState('');
  const [reload, setReload] = useState(0);

  useEffect(() => {
    const abort = new AbortController();
    (async () => {
      try {
        setError('');
        const latest = await api.telemetry.getLatest({ deviceIds: [deviceId] }, { signal: abort.signal });
        const metrics = [...new Set(latest.points.map((p) => p.metric))];
        if (metrics.length === 0) {
          setSamples([]);
          return;
        }
        const end = Date.now();
        setSpan([(end - range.seconds * 1000) / 1000, end / 1000]);
        const res = await api.telemetry.queryHistory(
          {
            deviceId,
            metrics,
            timeRange: { start: timestampFromMs(end - range.seconds * 1000), end: timestampFromMs(end) },
            maxPoints: 300,
            aggregations: [Aggregation.AVG],
          },
          { signal: abort.signal },
        );
        setBucket(res.bucketWidth ? `${res.bucketWidth.seconds}s buckets` : '');
        setSamples(res.series.flatMap((s) => s.buckets.map((b) => ({ time: epochSeconds(b.startTime), metric: s.metric, value: b.value }))));
      } catch (err) {
        if (!abort.signal.aborted) setError(errorMessage(err));
      }
    })();
    return () => abort.abort();
  }, [deviceId, range, reload]);

  const metrics = useMemo(() => [...new Set(samples.map((s) => s.metric))].sort(), [samples]);
  const [metric, setMetric] = useMetricChoice(metrics);
  const data = useMemo(() => toChartData(metric === ALL ? samples : samples.filter((s) => s.metric === metric)), [samples, metric]);
  return (
    <div className="card">
      <h2>History</h2>
      <div className="ranges" role="group" aria-label="range">
        {RANGES.map((r) => (
          <button key={r.label} className={r === range ? 'selected' : ''} onClick={() => setRange(r)}>
            {r.label}
          </button>
        ))}
        <button onClick={() => setReload((n) => n + 1)}>Refresh</button>
        <MetricPicker metrics={metrics} value={metric} onChange={setMetric} />
        <span className="muted">{bucket}</span>
      </div>
      {error ? <p className="error">{error}</p> : <TimeChart data={data} testId="history-chart" xRange={span} />}
    </div>
  );
}

/** Desired and reported state; desired is editable as JSON. */
function TwinPanel({ deviceId }: { deviceId: string }) {
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
          <textarea value={draft} onChange={(e) => setDraft(e.target.value)} rows={8} data-testid="desired-editor" />
          <button type="submit">Save desired</button>
        </form>
        <div>
          <h3>Reported (v{String(twin?.reportedVersion ?? 0n)})</h3>
          <pre data-testid="reported">{pretty(twin?.reported)}</pre>
          <p className="muted">updated {formatTime(twin?.reportedUpdateTime)}</p>
          <button onClick={() => void load()}>Reload</button>
        </div>
      </div>
      {message && <p className="muted">{message}</p>}
    </div>
  );
}

/** Sends a command and shows the device's reply (or why there was none). */
function CommandPanel({ deviceId }: { deviceId: string }) {
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
      const res = await api.commands.sendCommand(
        { deviceId, name, payload: JSON.parse(payload) as JsonObject, timeout: { seconds: BigInt(timeout), nanos: 0 } },
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
        <input placeholder="name" name="command-name" value={name} onChange={(e) => setName(e.target.value)} required />
        <input placeholder='payload {"a":1}' name="command-payload" value={payload} onChange={(e) => setPayload(e.target.value)} />
        <label>
          timeout s
          <input type="number" min={1} max={60} value={timeout} onChange={(e) => setTimeoutSeconds(Number(e.target.value))} />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Waiting for reply…' : 'Send'}
        </button>
      </form>
      {error && <p className="error">{error}</p>}
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

/** One device: details, live and history charts, twin and commands. */
export function DevicePage({ deviceId }: { deviceId: string }) {
  const [device, setDevice] = useState<Device | undefined>();
  const [error, setError] = useState('');

  useEffect(() => {
    const abort = new AbortController();
    api.devices
      .getDevice({ id: deviceId }, { signal: abort.signal })
      .then((res) => setDevice(res.device))
      .catch((err) => !abort.signal.aborted && setError(errorMessage(err)));
    void followStream(
      (signal) => api.devices.watchDevices({ deviceIds: [deviceId] }, { signal }),
      (event) => {
        if (event.device && event.type !== DeviceEventType.DELETED) setDevice(event.device);
      },
      abort.signal,
    );
    return () => abort.abort();
  }, [deviceId]);

  return (
    <section>
      <p>
        <a href="#/devices">← Devices</a>
      </p>
      <h1>
        {device?.name ?? deviceId} {device && <StatusBadge device={device} />}
      </h1>
      {error && <p className="error">{error}</p>}
      {device && (
        <p className="muted">
          id {device.id} · type {device.type || '—'} · last seen {formatTime(device.lastSeenTime)}
        </p>
      )}
      <LiveChart deviceId={deviceId} />
      <HistoryChart deviceId={deviceId} />
      <TwinPanel deviceId={deviceId} />
      <CommandPanel deviceId={deviceId} />
    </section>
  );
}
