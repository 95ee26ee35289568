import { FormEvent, useEffect, useState } from 'react';
import { Link } from 'react-router';
import { Alert, AlertRule, AlertState, Comparison, Severity } from '../../../gen/es/iot/monitoring/v1/alerts_pb';
import { Delivery, DeliveryState, NotificationChannel } from '../../../gen/es/iot/monitoring/v1/rules_pb';
import { ConfirmButton } from './components/confirm-button';
import { TableHead } from './components/table-head';
import { api, errorMessage, followStream } from './api';
import { parseLabels } from './devices';
import { formatTime } from './format';
import { GroupSelect } from './components/group-select';
import { useAbilities } from './principal';

const COMPARISONS: Array<[Comparison, string]> = [
  [Comparison.GREATER_THAN, '>'],
  [Comparison.GREATER_OR_EQUAL, '≥'],
  [Comparison.LESS_THAN, '<'],
  [Comparison.LESS_OR_EQUAL, '≤'],
];

interface RuleDraft {
  name: string;
  metric: string;
  labels: string;
  /** A device group id ('' for none). */
  groupId: string;
  kind: 'threshold' | 'noData';
  comparison: Comparison;
  threshold: number;
  timeoutSeconds: number;
  severity: Severity;
  enabled: boolean;
  /** Notification channels told on raise, repeat and resolve. */
  channelIds: string[];
  /** 0: no repeats. */
  repeatMinutes: number;
  /** "HH:MM" each, both empty: no quiet hours. */
  quietStart: string;
  quietEnd: string;
  timeZone: string;
}

const EMPTY_RULE: RuleDraft = {
  name: '',
  metric: '',
  labels: '',
  groupId: '',
  kind: 'threshold',
  comparison: Comparison.GREATER_THAN,
  threshold: 0,
  timeoutSeconds: 300,
  severity: Severity.WARNING,
  enabled: true,
  channelIds: [],
  repeatMinutes: 0,
  quietStart: '',
  quietEnd: '',
  timeZone: '',
};

function draftOf(rule: AlertRule): RuleDraft {
  const c = rule.condition;
  return {
    name: rule.name,
    metric: rule.metric,
    labels: Object.entries(rule.labels).map(([k, v]) => `${k}=${v}`).join(', '),
    groupId: rule.groupIds[0] ?? '',
    kind: c.case === 'noData' ? 'noData' : 'threshold',
    comparison: c.case === 'threshold' ? c.value.comparison : Comparison.GREATER_THAN,
    threshold: c.case === 'threshold' ? c.value.threshold : 0,
    timeoutSeconds: c.case === 'noData' ? Number(c.value.timeout?.seconds ?? 300n) : 300,
    severity: rule.severity,
    enabled: rule.enabled,
    channelIds: rule.notification?.channelIds ?? [],
    repeatMinutes: Number(rule.notification?.repeatInterval?.seconds ?? 0n) / 60,
    quietStart: rule.notification?.quietHours?.start ?? '',
    quietEnd: rule.notification?.quietHours?.end ?? '',
    timeZone: rule.notification?.quietHours?.timeZone ?? '',
  };
}

/** A rule's fields as CreateAlertRule/UpdateAlertRule take them. */
function ruleOf(draft: RuleDraft) {
  return {
    name: draft.name,
    metric: draft.metric,
    labels: parseLabels(draft.labels),
    groupIds: draft.groupId ? [draft.groupId] : [],
    condition:
      draft.kind === 'threshold'
        ? { case: 'threshold' as const, value: { comparison: draft.comparison, threshold: draft.threshold } }
        : { case: 'noData' as const, value: { timeout: { seconds: BigInt(draft.timeoutSeconds), nanos: 0 } } },
    severity: draft.severity,
    enabled: draft.enabled,
    notification:
      draft.channelIds.length === 0
        ? undefined
        : {
            channelIds: draft.channelIds,
            repeatInterval: draft.repeatMinutes > 0 ? { seconds: BigInt(Math.round(draft.repeatMinutes * 60)), nanos: 0 } : undefined,
            quietHours: draft.quietStart && draft.quietEnd ? { start: draft.quietStart, end: draft.quietEnd, timeZone: draft.timeZone } : undefined,
          },
  };
}

function describeCondition(rule: AlertRule): string {
  const c = rule.condition;
  if (c.case === 'threshold') return `${rule.metric} ${COMPARISONS.find(([k]) => k === c.value.comparison)?.[1] ?? '?'} ${c.value.threshold}`;
  if (c.case === 'noData') return `no ${rule.metric} for ${c.value.timeout?.seconds ?? '?'}s`;
  return '—';
}

function RuleForm({ initial, submitLabel, channels, onSubmit, onCancel }: { initial: RuleDraft; submitLabel: string; channels: NotificationChannel[]; onSubmit: (draft: RuleDraft) => Promise<void>; onCancel?: () => void }) {
  const [draft, setDraft] = useState(initial);
  const [error, setError] = useState('');
  async function submit(event: FormEvent) {
    event.preventDefault();
    setError('');
    try {
      await onSubmit(draft);
      if (!onCancel) setDraft(EMPTY_RULE);
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <form className="inline-form" onSubmit={submit} data-testid="rule-form" aria-label={submitLabel}>
      <input aria-label="rule name" name="rule-name" placeholder="name" value={draft.name} onChange={(e) => setDraft({ ...draft, name: e.target.value })} required />
      <input aria-label="metric" name="rule-metric" placeholder="metric" value={draft.metric} onChange={(e) => setDraft({ ...draft, metric: e.target.value })} required />
      <input aria-label="device labels" name="rule-labels" placeholder="labels site=a" value={draft.labels} onChange={(e) => setDraft({ ...draft, labels: e.target.value })} />
      <GroupSelect name="rule-group" value={draft.groupId} onChange={(groupId) => setDraft({ ...draft, groupId })} />
      <select aria-label="condition" name="rule-kind" value={draft.kind} onChange={(e) => setDraft({ ...draft, kind: e.target.value as RuleDraft['kind'] })}>
        <option value="threshold">threshold</option>
        <option value="noData">no data</option>
      </select>
      {draft.kind === 'threshold' ? (
        <>
          <select aria-label="comparison" name="rule-comparison" value={draft.comparison} onChange={(e) => setDraft({ ...draft, comparison: Number(e.target.value) as Comparison })}>
            {COMPARISONS.map(([c, label]) => (
              <option key={c} value={c}>
                {label}
              </option>
            ))}
          </select>
          <input aria-label="threshold" name="rule-threshold" type="number" step="any" value={draft.threshold} onChange={(e) => setDraft({ ...draft, threshold: Number(e.target.value) })} />
        </>
      ) : (
        <input aria-label="timeout seconds" name="rule-timeout" type="number" min={1} value={draft.timeoutSeconds} onChange={(e) => setDraft({ ...draft, timeoutSeconds: Number(e.target.value) })} />
      )}
      <select aria-label="severity" name="rule-severity" value={draft.severity} onChange={(e) => setDraft({ ...draft, severity: Number(e.target.value) as Severity })}>
        {[Severity.INFO, Severity.WARNING, Severity.CRITICAL].map((s) => (
          <option key={s} value={s}>
            {Severity[s].toLowerCase()}
          </option>
        ))}
      </select>
      <label className="checkbox">
        <input type="checkbox" name="rule-enabled" checked={draft.enabled} onChange={(e) => setDraft({ ...draft, enabled: e.target.checked })} /> enabled
      </label>
      <select
        aria-label="notify channels"
        name="rule-channels"
        multiple
        value={draft.channelIds}
        onChange={(e) => setDraft({ ...draft, channelIds: [...e.target.selectedOptions].map((o) => o.value) })}
      >
        {channels.map((c) => (
          <option key={c.id} value={c.id}>
            {c.name}
          </option>
        ))}
      </select>
      {draft.channelIds.length > 0 && (
        <>
          <input aria-label="repeat minutes" name="rule-repeat" type="number" min={0} step="any" placeholder="repeat every … min" value={draft.repeatMinutes || ''} onChange={(e) => setDraft({ ...draft, repeatMinutes: Number(e.target.value) })} />
          <input aria-label="quiet from" name="rule-quiet-start" type="time" value={draft.quietStart} onChange={(e) => setDraft({ ...draft, quietStart: e.target.value })} />
          <input aria-label="quiet until" name="rule-quiet-end" type="time" value={draft.quietEnd} onChange={(e) => setDraft({ ...draft, quietEnd: e.target.value })} />
          <input aria-label="time zone" name="rule-time-zone" placeholder="time zone (UTC)" value={draft.timeZone} onChange={(e) => setDraft({ ...draft, timeZone: e.target.value })} />
        </>
      )}
      <button type="submit">{submitLabel}</button>
      {onCancel && (
        <button type="button" className="secondary" onClick={onCancel}>
          Cancel
        </button>
      )}
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}

/** Alert rules: create, edit, enable/disable and delete (operators and admins); everyone sees them. */
function RulesCard() {
  const { canOperate } = useAbilities();
  const [rules, setRules] = useState<AlertRule[]>([]);
  const [editing, setEditing] = useState<string | undefined>();
  const [channels, setChannels] = useState<NotificationChannel[]>([]);
  const [error, setError] = useState('');
  const [reload, setReload] = useState(0);
  useEffect(() => {
    api.channels.listNotificationChannels({ page: { pageSize: 500 } }).then((r) => setChannels(r.channels), (err) => setError(errorMessage(err)));
  }, []);
  useEffect(() => {
    const abort = new AbortController();
    (async () => {
      const all: AlertRule[] = [];
      let pageToken = '';
      do {
        const res = await api.alerts.listAlertRules({ page: { pageSize: 500, pageToken } }, { signal: abort.signal });
        all.push(...res.rules);
        pageToken = res.page?.nextPageToken ?? '';
      } while (pageToken);
      setRules(all.sort((a, b) => a.name.localeCompare(b.name)));
    })().catch((err) => !abort.signal.aborted && setError(errorMessage(err)));
    return () => abort.abort();
  }, [reload]);
  const act = (work: () => Promise<unknown>) => () =>
    work().then(
      () => setReload((n) => n + 1),
      (err) => setError(errorMessage(err)),
    );
  return (
    <div className="card">
      <h2>Rules</h2>
      {canOperate && (
        <RuleForm
          initial={EMPTY_RULE}
          submitLabel="Create rule"
          channels={channels}
          onSubmit={async (draft) => {
            await api.alerts.createAlertRule({ rule: ruleOf(draft) });
            setReload((n) => n + 1);
          }}
        />
      )}
      {error && <p className="error" role="alert">{error}</p>}
      <table data-testid="rule-list">
        <thead>
          <tr>
            <th>Name</th>
            <th>Condition</th>
            <th>Labels</th>
            <th>Severity</th>
            <th>Enabled</th>
            {canOperate && <th />}
          </tr>
        </thead>
        <tbody>
          {rules.map((r) =>
            editing === r.id ? (
              <tr key={r.id}>
                <td colSpan={6}>
                  <RuleForm
                    initial={draftOf(r)}
                    submitLabel="Save rule"
                    channels={channels}
                    onCancel={() => setEditing(undefined)}
                    onSubmit={async (draft) => {
                      await api.alerts.updateAlertRule({ rule: { ...ruleOf(draft), id: r.id }, updateMask: { paths: ['name', 'metric', 'labels', 'group_ids', draft.kind === 'threshold' ? 'threshold' : 'no_data', 'severity', 'enabled', 'notification'] } });
                      setEditing(undefined);
                      setReload((n) => n + 1);
                    }}
                  />
                </td>
              </tr>
            ) : (
              <tr key={r.id} data-testid={`rule-row-${r.name}`}>
                <td>{r.name}</td>
                <td>{describeCondition(r)}</td>
                <td>
                  {Object.entries(r.labels)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(', ')}
                </td>
                <td className={`severity ${Severity[r.severity].toLowerCase()}`}>{Severity[r.severity].toLowerCase()}</td>
                <td>{r.enabled ? 'yes' : 'no'}</td>
                {canOperate && r.deviceTypeId && (
                  // A device type's default rule: only the type changes it (the API refuses edits and deletes).
                  <td className="muted" data-testid={`rule-type-owned-${r.name}`}>
                    set by its device type
                  </td>
                )}
                {canOperate && !r.deviceTypeId && (
                  <td className="inline-form">
                    <button onClick={() => setEditing(r.id)}>Edit</button>
                    <button className="secondary" onClick={act(() => api.alerts.updateAlertRule({ rule: { id: r.id, enabled: !r.enabled }, updateMask: { paths: ['enabled'] } }))}>
                      {r.enabled ? 'Disable' : 'Enable'}
                    </button>
                    <ConfirmButton label="Delete" question={`Delete alert rule ${r.name}?`} onConfirm={act(() => api.alerts.deleteAlertRule({ id: r.id }))} />
                  </td>
                )}
              </tr>
            ),
          )}
        </tbody>
      </table>
      {rules.length === 0 && !error && <p className="muted">No rules.</p>}
    </div>
  );
}

/** The notifications sent (or suppressed, rate limited, dead-lettered) for one alert, newest first. */
function AlertDeliveries({ alertId }: { alertId: string }) {
  const [deliveries, setDeliveries] = useState<Delivery[] | undefined>();
  const [error, setError] = useState('');
  useEffect(() => {
    api.alerts.listAlertDeliveries({ alertId, page: { pageSize: 100 } }).then((r) => setDeliveries(r.deliveries), (err) => setError(errorMessage(err)));
  }, [alertId]);
  if (error) return <p className="error" role="alert">{error}</p>;
  if (!deliveries) return <p className="muted">Loading…</p>;
  if (deliveries.length === 0) return <p className="muted">No notifications (the rule names no channels).</p>;
  return (
    <table data-testid={`alert-deliveries-${alertId}`}>
      <TableHead columns={['Time', 'Event', 'Channel', 'State', 'Attempts', 'Error']} />
      <tbody>
        {deliveries.map((d) => (
          <tr key={d.id}>
            <td>{formatTime(d.createTime)}</td>
            <td>{d.alertEvent}</td>
            <td>{d.channelId}</td>
            <td>{DeliveryState[d.state]}</td>
            <td>{d.attempts}</td>
            <td>{d.lastError}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Rules, and the tenant's alerts newest first, live from StreamAlerts; open ones can be acknowledged by operators. */
export function AlertsPage() {
  const { canOperate } = useAbilities();
  const [alerts, setAlerts] = useState<Map<string, Alert>>(new Map());
  const [unackedOnly, setUnackedOnly] = useState(false);
  const [shownDeliveries, setShownDeliveries] = useState<string | undefined>();
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
      <RulesCard />
      <label className="muted checkbox">
        <input type="checkbox" checked={unackedOnly} onChange={(e) => setUnackedOnly(e.target.checked)} /> unacknowledged only
      </label>
      {error && <p className="error" role="alert">{error}</p>}
      <table data-testid="alert-list">
        <TableHead columns={['Raised', 'Severity', 'State', 'Device', 'Metric', 'Value', 'Message', '']} />
        <tbody>
          {shown.map((a) => [
            <tr key={a.id} data-testid={`alert-row-${a.id}`}>
              <td>{formatTime(a.raiseTime)}</td>
              <td className={`severity ${Severity[a.severity].toLowerCase()}`}>{Severity[a.severity]}</td>
              <td>{AlertState[a.state]}</td>
              <td>
                <Link to={`/devices/${encodeURIComponent(a.deviceId)}`}>{a.deviceId}</Link>
              </td>
              <td>{a.metric}</td>
              <td>{a.value}</td>
              <td>{a.message}</td>
              <td>
                {a.acknowledgeTime ? (
                  <span className="muted" data-testid={`alert-acked-${a.id}`}>
                    acked by {a.acknowledgedBy || '?'}
                  </span>
                ) : !canOperate ? null : (
                  <button onClick={() => void acknowledge(a.id)} data-testid={`alert-ack-${a.id}`}>
                    Acknowledge
                  </button>
                )}
                <button className="secondary" onClick={() => setShownDeliveries(shownDeliveries === a.id ? undefined : a.id)} data-testid={`alert-notifications-${a.id}`}>
                  Notifications
                </button>
              </td>
            </tr>,
            shownDeliveries === a.id && (
              <tr key={`${a.id}-deliveries`}>
                <td colSpan={8}>
                  <AlertDeliveries alertId={a.id} />
                </td>
              </tr>
            ),
          ])}
        </tbody>
      </table>
      {shown.length === 0 && !error && <p className="muted">No alerts.</p>}
    </section>
  );
}
