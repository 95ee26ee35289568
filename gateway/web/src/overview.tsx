import { useEffect, useState } from 'react';
import { Link } from 'react-router';
import { Device, DeviceStatus } from '../../../gen/es/iot/device/v1/device_pb';
import { AlertState, Severity } from '../../../gen/es/iot/monitoring/v1/alerts_pb';
import { api, errorMessage } from './api';
import { StatusBadge } from './devices';
import { formatTime } from './format';

/** Counting stops here: the registry has no count RPC, and the overview must stay fast on 100,000 devices. */
const COUNT_CAP = 5000;

/** How many devices have this status, paging up to COUNT_CAP. */
async function countDevices(status: DeviceStatus, signal: AbortSignal): Promise<{ count: number; capped: boolean }> {
  let count = 0;
  let pageToken = '';
  do {
    const res = await api.devices.listDevices({ page: { pageSize: 1000, pageToken }, status }, { signal });
    count += res.devices.length;
    pageToken = res.page?.nextPageToken ?? '';
  } while (pageToken && count < COUNT_CAP);
  return { count, capped: pageToken !== '' };
}

function Figure({ label, value, testId }: { label: string; value: string; testId: string }) {
  return (
    <div className="figure card">
      <div className="figure-value" data-testid={testId}>
        {value}
      </div>
      <div className="muted">{label}</div>
    </div>
  );
}

/** The fleet at a glance: online and offline devices, open alerts by severity, recently seen devices. */
export function OverviewPage() {
  const [online, setOnline] = useState<string>('…');
  const [offline, setOffline] = useState<string>('…');
  const [alerts, setAlerts] = useState<Map<Severity, number> | undefined>();
  const [recent, setRecent] = useState<Device[]>([]);
  const [deadLetters, setDeadLetters] = useState<{ byReason: Map<string, number>; capped: boolean } | undefined>();
  const [error, setError] = useState('');

  useEffect(() => {
    const abort = new AbortController();
    const fail = (err: unknown) => !abort.signal.aborted && setError(errorMessage(err));
    const show = (set: (v: string) => void) => ({ count, capped }: { count: number; capped: boolean }) => set(`${count.toLocaleString()}${capped ? '+' : ''}`);
    countDevices(DeviceStatus.ONLINE, abort.signal).then(show(setOnline), fail);
    countDevices(DeviceStatus.OFFLINE, abort.signal).then(show(setOffline), fail);
    api.alerts
      .listAlerts({ page: { pageSize: 1000 }, state: AlertState.RAISED }, { signal: abort.signal })
      .then((res) => {
        const bySeverity = new Map<Severity, number>();
        for (const a of res.alerts) bySeverity.set(a.severity, (bySeverity.get(a.severity) ?? 0) + 1);
        setAlerts(bySeverity);
      }, fail);
    api.deadLetters.listDeadLetters({ page: { pageSize: 1000 } }, { signal: abort.signal }).then((res) => {
      const byReason = new Map<string, number>();
      for (const d of res.deadLetters) byReason.set(d.reason, (byReason.get(d.reason) ?? 0) + 1);
      setDeadLetters({ byReason, capped: (res.page?.nextPageToken ?? '') !== '' });
    }, fail);
    api.devices
      .listDevices({ page: { pageSize: 200 }, status: DeviceStatus.ONLINE }, { signal: abort.signal })
      .then((res) => setRecent([...res.devices].sort((a, b) => Number((b.lastSeenTime?.seconds ?? 0n) - (a.lastSeenTime?.seconds ?? 0n))).slice(0, 10)), fail);
    return () => abort.abort();
  }, []);

  const severities = [Severity.CRITICAL, Severity.WARNING, Severity.INFO];
  return (
    <section>
      <h1>Overview</h1>
      {error && <p className="error" role="alert">{error}</p>}
      <div className="figures">
        <Figure label="devices online" value={online} testId="overview-online" />
        <Figure label="devices offline" value={offline} testId="overview-offline" />
        {severities.map((s) => (
          <Figure key={s} label={`open ${Severity[s].toLowerCase()} alerts`} value={alerts ? String(alerts.get(s) ?? 0) : '…'} testId={`overview-alerts-${Severity[s].toLowerCase()}`} />
        ))}
      </div>
      <div className="card">
        <h2>Dead letters</h2>
        {!deadLetters ? (
          <p className="muted">…</p>
        ) : deadLetters.byReason.size === 0 ? (
          <p className="muted" data-testid="overview-dead-letters">
            No refused telemetry.
          </p>
        ) : (
          <ul className="plain" data-testid="overview-dead-letters">
            {[...deadLetters.byReason].sort(([, a], [, b]) => b - a).map(([reason, n]) => (
              <li key={reason}>
                <strong>{n.toLocaleString()}</strong> {reason}
              </li>
            ))}
            {deadLetters.capped && <li className="muted">(the oldest 1,000 counted)</li>}
          </ul>
        )}
      </div>
      <div className="card">
        <h2>Recently seen</h2>
        {recent.length === 0 ? (
          <p className="muted">No device online.</p>
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
