import { useEffect, useState } from 'react';
import { Alert, AlertState, Severity } from '../../../gen/es/iot/monitoring/v1/alerts_pb';
import { api, errorMessage, followStream } from './api';
import { formatTime } from './format';

/** Alerts of the tenant, newest first, live from StreamAlerts, each with an acknowledge button. */
export function AlertsPage() {
  const [alerts, setAlerts] = useState<Map<string, Alert>>(new Map());
  const [unackedOnly, setUnackedOnly] = useState(false);
  const [error, setError] = useState('');

  useEffect(() => {
    const abort = new AbortController();
    api.alerts
      .listAlerts({ page: { pageSize: 200 }, unacknowledgedOnly: unackedOnly }, { signal: abort.signal })
      .then((res) => setAlerts(new Map(res.alerts.map((a) => [a.id, a]))))
      .catch((err) => !abort.signal.aborted && setError(errorMessage(err)));
    void followStream(
      (signal) => api.alerts.streamAlerts({}, { signal }),
      (res) => res.alert && setAlerts((prev) => new Map(prev).set(res.alert!.id, res.alert!)),
      abort.signal,
    );
    return () => abort.abort();
  }, [unackedOnly]);

  async function acknowledge(id: string) {
    try {
      const res = await api.alerts.acknowledgeAlert({ id });
      if (res.alert) setAlerts((prev) => new Map(prev).set(id, res.alert!));
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const shown = [...alerts.values()]
    .filter((a) => !unackedOnly || !a.acknowledgeTime)
    .sort((a, b) => Number((b.raiseTime?.seconds ?? 0n) - (a.raiseTime?.seconds ?? 0n)));
  return (
    <section>
      <h1>Alerts</h1>
      <label className="muted checkbox">
        <input type="checkbox" checked={unackedOnly} onChange={(e) => setUnackedOnly(e.target.checked)} /> unacknowledged only
      </label>
      {error && <p className="error">{error}</p>}
      <table data-testid="alert-list">
        <thead>
          <tr>
            <th>Raised</th>
            <th>Severity</th>
            <th>State</th>
            <th>Device</th>
            <th>Metric</th>
            <th>Value</th>
            <th>Message</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {shown.map((a) => (
            <tr key={a.id} data-testid={`alert-row-${a.id}`}>
              <td>{formatTime(a.raiseTime)}</td>
              <td className={`severity ${Severity[a.severity].toLowerCase()}`}>{Severity[a.severity]}</td>
              <td>{AlertState[a.state]}</td>
              <td>
                <a href={`#/devices/${encodeURIComponent(a.deviceId)}`}>{a.deviceId}</a>
              </td>
              <td>{a.metric}</td>
              <td>{a.value}</td>
              <td>{a.message}</td>
              <td>
                {a.acknowledgeTime ? (
                  <span className="muted" data-testid={`alert-acked-${a.id}`}>
                    acked by {a.acknowledgedBy || '?'}
                  </span>
                ) : (
                  <button onClick={() => void acknowledge(a.id)} data-testid={`alert-ack-${a.id}`}>
                    Acknowledge
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown.length === 0 && !error && <p className="muted">No alerts.</p>}
    </section>
  );
}
