import { useEffect, useState } from 'react';
import { Link } from 'react-router';
import { Device, DeviceStatus } from '../../../gen/es/iot/device/v1/device_pb';
import { AlertState, Severity } from '../../../gen/es/iot/monitoring/v1/alerts_pb';
import { api, errorMessage, followStream } from './api';
import { StatusBadge } from './devices';
import { formatTime } from './format';

/** How many devices have this status (CountDevices: counted by the server, not paged through). */
async function countDevices(status: DeviceStatus, signal: AbortSignal): Promise<number> {
  const res = await api.devices.countDevices({ status }, { signal });
  return Number(res.count);
}

/** The window the ingest rate is averaged over. */
const RATE_WINDOW_MS = 10_000;

/**
 * Points per second arriving for the tenant, measured from StreamLive over
 * the whole tenant (points received plus those the server dropped for this
 * client), averaged over the last RATE_WINDOW_MS (or since the page opened).
 */
function useIngestRate(): number | undefined {
  const [rate, setRate] = useState<number | undefined>();
  useEffect(() => {
    const abort = new AbortController();
    const frames: Array<{ at: number; points: number }> = [];
    let since = 0;
    void followStream(
      (signal) => api.telemetry.streamLive({}, { signal }),
      (frame) => frames.push({ at: Date.now(), points: frame.points.length + Number(frame.droppedPoints) }),
      abort.signal,
      (connected) => {
        if (connected && since === 0) since = Date.now();
      },
    );
    const timer = setInterval(() => {
      if (since === 0) return;
      const now = Date.now();
      while (frames.length > 0 && frames[0].at < now - RATE_WINDOW_MS) frames.shift();
      const span = Math.min(RATE_WINDOW_MS, now - since);
      if (span >= 1000) setRate((frames.reduce((n, f) => n + f.points, 0) * 1000) / span);
    }, 1000);
    return () => {
      abort.abort();
      clearInterval(timer);
    };
  }, []);
  return rate;
}

/** One number of the overview; with `to`, its label links to the list behind it. */
function Figure({ label, value, testId, to }: { label: string; value: string; testId: string; to?: string }) {
  return (
    <div className="figure card">
      <div className="figure-value" data-testid={testId}>
        {value}
      </div>
      <div className="muted">{to ? <Link to={to}>{label}</Link> : label}</div>
    </div>
  );
}

/** The fleet at a glance: online and offline devices, open alerts by severity, ingest rate, dead letters per reason, recently seen devices. */
export function OverviewPage() {
  const [online, setOnline] = useState<string>('…');
  const [offline, setOffline] = useState<string>('…');
  const [alerts, setAlerts] = useState<Map<Severity, number> | undefined>();
  const [recent, setRecent] = useState<Device[]>([]);
  const [deadLetters, setDeadLetters] = useState<{ counts: Array<{ reason: string; count: bigint }>; truncated: boolean } | undefined>();
  const [error, setError] = useState('');
  const rate = useIngestRate();

  useEffect(() => {
    const abort = new AbortController();
    const fail = (err: unknown) => !abort.signal.aborted && setError(errorMessage(err));
    const show = (set: (v: string) => void) => (count: number) => set(count.toLocaleString());
    countDevices(DeviceStatus.ONLINE, abort.signal).then(show(setOnline), fail);
    countDevices(DeviceStatus.OFFLINE, abort.signal).then(show(setOffline), fail);
    api.alerts
      .listAlerts({ page: { pageSize: 1000 }, state: AlertState.RAISED }, { signal: abort.signal })
      .then((res) => {
        const bySeverity = new Map<Severity, number>();
        for (const a of res.alerts) bySeverity.set(a.severity, (bySeverity.get(a.severity) ?? 0) + 1);
        setAlerts(bySeverity);
      }, fail);
    // Counted by the server over the last 24 hours (the request's default window).
    api.deadLetters.countDeadLetters({}, { signal: abort.signal }).then((res) => setDeadLetters({ counts: res.counts, truncated: res.truncated }), fail);
    api.devices.listDevices({ page: { pageSize: 10 }, orderBy: 'last_seen_time desc' }, { signal: abort.signal }).then((res) => setRecent(res.devices.filter((d) => d.lastSeenTime)), fail);
    return () => abort.abort();
  }, []);

  const severities = [Severity.CRITICAL, Severity.WARNING, Severity.INFO];
  return (
    <section>
      <h1>Overview</h1>
      {error && <p className="error" role="alert">{error}</p>}
      <div className="figures">
        <Figure label="devices online" value={online} testId="overview-online" to="/devices?status=online" />
        <Figure label="devices offline" value={offline} testId="overview-offline" to="/devices?status=offline" />
        {severities.map((s) => (
          <Figure key={s} label={`open ${Severity[s].toLowerCase()} alerts`} value={alerts ? String(alerts.get(s) ?? 0) : '…'} testId={`overview-alerts-${Severity[s].toLowerCase()}`} />
        ))}
        <Figure label={`points/s ingested (last ${RATE_WINDOW_MS / 1000} s)`} value={rate === undefined ? '…' : rate.toLocaleString(undefined, { maximumFractionDigits: 1 })} testId="overview-ingest-rate" />
      </div>
      <div className="card">
        <h2>Dead letters (last 24 h)</h2>
        {!deadLetters ? (
          <p className="muted">…</p>
        ) : deadLetters.counts.length === 0 ? (
          <p className="muted" data-testid="overview-dead-letters">
            No refused telemetry.
          </p>
        ) : (
          <ul className="plain" data-testid="overview-dead-letters">
            {deadLetters.counts.map(({ reason, count }) => (
              <li key={reason}>
                <strong>{count.toLocaleString()}</strong> <Link to={`/dead-letters?reason=${encodeURIComponent(reason)}`}>{reason}</Link>
              </li>
            ))}
            {deadLetters.truncated && <li className="muted">(the oldest 100,000 counted)</li>}
          </ul>
        )}
      </div>
      <div className="card">
        <h2>Recently seen</h2>
        {recent.length === 0 ? (
          <p className="muted">No device seen yet.</p>
        ) : (
          <ul className="plain" data-testid="overview-recent">
            {recent.map((d) => (
              <li key={d.id}>
                <Link to={`/devices/${encodeURIComponent(d.id)}`}>{d.name || d.id}</Link> <StatusBadge device={d} /> <span className="muted">{formatTime(d.lastSeenTime)}</span>
              </li>
            ))}
          </ul>
        )}
      </div>
    </section>
  );
}
