import { FormEvent, useEffect, useState } from 'react';
import { Delivery, DeliveryState, DryRunRuleResponse, NotificationChannel, Rule, RuleAction } from '../../../gen/es/iot/monitoring/v1/rules_pb';
import { ConfirmButton } from './components/confirm-button';
import { SecretPanel } from './components/secret-panel';
import { TableHead } from './components/table-head';
import { api, errorMessage } from './api';
import { parseLabels } from './devices';
import { commaList, formatTime } from './format';
import { GroupSelect } from './components/group-select';
import { useAbilities } from './principal';

type ActionKind = 'derivedMetric' | 'republish' | 'webhook' | 'notify';

interface RuleDraft {
  name: string;
  condition: string;
  metrics: string;
  deviceIds: string;
  deviceTypes: string;
  labels: string;
  /** A device group id ('' for none). */
  groupId: string;
  action: ActionKind;
  /** Derived metric name, republish topic, webhook URL or channel id. */
  target: string;
  /** The derived metric's CEL expression. */
  expression: string;
}

const EMPTY_RULE: RuleDraft = { name: '', condition: 'm.temp > 30.0', metrics: 'temp', deviceIds: '', deviceTypes: '', labels: '', groupId: '', action: 'webhook', target: '', expression: '' };

const TARGET_PLACEHOLDER: Record<ActionKind, string> = {
  derivedMetric: 'derived metric name',
  republish: 'topic',
  webhook: 'https://receiver.example/hook',
  notify: 'channel id',
};

/** A draft as CreateRule takes it. */
function ruleOf(d: RuleDraft) {
  const kind =
    d.action === 'derivedMetric'
      ? { case: 'derivedMetric' as const, value: { metric: d.target, expression: d.expression } }
      : d.action === 'republish'
        ? { case: 'republish' as const, value: { topic: d.target } }
        : d.action === 'webhook'
          ? { case: 'webhook' as const, value: { url: d.target, secret: '' } }
          : { case: 'notify' as const, value: { channelId: d.target, title: '' } };
  return {
    name: d.name,
    condition: d.condition,
    source: { metrics: commaList(d.metrics), deviceIds: commaList(d.deviceIds), deviceTypes: commaList(d.deviceTypes), labels: parseLabels(d.labels), groupIds: d.groupId ? [d.groupId] : [] },
    actions: [{ kind }],
    enabled: true,
  };
}

function describeAction(a: RuleAction): string {
  const k = a.kind;
  switch (k.case) {
    case 'derivedMetric':
      return `derive ${k.value.metric} = ${k.value.expression}`;
    case 'republish':
      return `republish ${k.value.topic}`;
    case 'webhook':
      return `webhook ${k.value.url}`;
    case 'notify':
      return `notify ${k.value.channelId}`;
    default:
      return '?';
  }
}

const STATE_LABEL: Record<number, string> = {
  [DeliveryState.DELIVERED]: 'delivered',
  [DeliveryState.DEAD_LETTERED]: 'dead-lettered',
  [DeliveryState.RATE_LIMITED]: 'rate limited',
};

function DeliveryTable({ deliveries }: { deliveries: Delivery[] }) {
  return (
    <table data-testid="delivery-list">
      <TableHead columns={['Time', 'Action', 'State', 'Attempts', 'Device', 'Error']} />
      <tbody>
        {deliveries.map((d) => (
          <tr key={d.id}>
            <td>{formatTime(d.createTime)}</td>
            <td>{d.actionKind}</td>
            <td>{STATE_LABEL[d.state] ?? '?'}</td>
            <td>{d.attempts}</td>
            <td>{d.deviceId}</td>
            <td>{d.lastError}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function RuleForm({ onCreated }: { onCreated: (rule: Rule) => void }) {
  const [draft, setDraft] = useState(EMPTY_RULE);
  const [error, setError] = useState('');
  const set = (patch: Partial<RuleDraft>) => setDraft({ ...draft, ...patch });
  async function submit(event: FormEvent) {
    event.preventDefault();
    setError('');
    try {
      const res = await api.rules.createRule({ rule: ruleOf(draft) });
      setDraft(EMPTY_RULE);
      onCreated(res.rule!);
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <form className="inline-form" onSubmit={submit} data-testid="cel-rule-form" aria-label="Create rule">
      <input aria-label="rule name" placeholder="name" value={draft.name} onChange={(e) => set({ name: e.target.value })} required />
      <input aria-label="condition" placeholder="CEL condition" value={draft.condition} onChange={(e) => set({ condition: e.target.value })} required />
      <input aria-label="metrics" placeholder="metrics a,b" value={draft.metrics} onChange={(e) => set({ metrics: e.target.value })} />
      <input aria-label="device ids" placeholder="devices" value={draft.deviceIds} onChange={(e) => set({ deviceIds: e.target.value })} />
      <input aria-label="device types" placeholder="types" value={draft.deviceTypes} onChange={(e) => set({ deviceTypes: e.target.value })} />
      <input aria-label="device labels" placeholder="labels site=a" value={draft.labels} onChange={(e) => set({ labels: e.target.value })} />
      <GroupSelect value={draft.groupId} onChange={(groupId) => set({ groupId })} />
      <select aria-label="action" value={draft.action} onChange={(e) => set({ action: e.target.value as ActionKind })}>
        <option value="webhook">webhook</option>
        <option value="derivedMetric">derived metric</option>
        <option value="republish">republish</option>
        <option value="notify">notify</option>
      </select>
      <input aria-label="action target" placeholder={TARGET_PLACEHOLDER[draft.action]} value={draft.target} onChange={(e) => set({ target: e.target.value })} required />
      {draft.action === 'derivedMetric' && <input aria-label="expression" placeholder="CEL value, e.g. (m.temp_f - 32.0) / 1.8" value={draft.expression} onChange={(e) => set({ expression: e.target.value })} required />}
      <button type="submit">Create rule</button>
      {error && (
        <span className="error" role="alert">
          {error}
        </span>
      )}
    </form>
  );
}

/** Rules: create, delete, dry-run, counters and the delivery log. */
function RulesCard() {
  const { canOperate } = useAbilities();
  const [rules, setRules] = useState<Rule[]>([]);
  const [secret, setSecret] = useState('');
  const [selected, setSelected] = useState<string | undefined>();
  const [deliveries, setDeliveries] = useState<Delivery[]>([]);
  const [dryRun, setDryRun] = useState<DryRunRuleResponse | undefined>();
  const [error, setError] = useState('');
  const [reload, setReload] = useState(0);
  useEffect(() => {
    const abort = new AbortController();
    api.rules
      .listRules({ page: { pageSize: 500 } }, { signal: abort.signal })
      .then((res) => setRules(res.rules.sort((a, b) => a.name.localeCompare(b.name))))
      .catch((err) => !abort.signal.aborted && setError(errorMessage(err)));
    return () => abort.abort();
  }, [reload]);
  const act = (work: () => Promise<unknown>) => () =>
    work().then(
      () => setReload((n) => n + 1),
      (err) => setError(errorMessage(err)),
    );
  return (
    <div className="card">
      <h1>Rules</h1>
      {canOperate && (
        <RuleForm
          onCreated={(rule) => {
            const hook = rule.actions.find((a) => a.kind.case === 'webhook');
            setSecret(hook?.kind.case === 'webhook' ? hook.kind.value.secret : '');
            setReload((n) => n + 1);
          }}
        />
      )}
      {secret && (
        <SecretPanel testId="webhook-secret" warning="The webhook's signing secret is shown once. Copy it now to verify the deliveries' signatures." label="Webhook signing secret" secret={secret} onClose={() => setSecret('')} />
      )}
      {error && <p className="error" role="alert">{error}</p>}
      <table data-testid="cel-rule-list">
        <TableHead columns={['Name', 'Condition', 'Actions', 'Matched', 'OK', 'Failed', 'Dead', '']} />
        <tbody>
          {rules.map((r) => (
            <tr key={r.id} data-testid={`cel-rule-row-${r.name}`}>
              <td>{r.name}</td>
              <td>
                <code>{r.condition}</code>
              </td>
              <td>{r.actions.map(describeAction).join('; ')}</td>
              <td>{String(r.stats?.matched ?? 0n)}</td>
              <td>{String(r.stats?.actionsOk ?? 0n)}</td>
              <td>{String(r.stats?.actionsFailed ?? 0n)}</td>
              <td>{String(r.stats?.actionsDeadLettered ?? 0n)}</td>
              <td>
                <button
                  className="secondary"
                  onClick={act(async () => {
                    setSelected(r.id);
                    setDryRun(await api.rules.dryRunRule({ ruleId: r.id }));
                    setDeliveries((await api.rules.listRuleDeliveries({ ruleId: r.id, page: { pageSize: 50 } })).deliveries);
                  })}
                >
                  Dry run
                </button>
                {canOperate && (
                  <ConfirmButton label="Delete" question={`Delete rule ${r.name}?`} onConfirm={act(() => api.rules.deleteRule({ id: r.id }))} />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {selected && dryRun && (
        <>
          <h3>
            Dry run: {dryRun.messagesMatched} of {dryRun.messagesEvaluated} recent messages would match
          </h3>
          <table data-testid="dry-run">
            <TableHead columns={['Time', 'Device', 'Matched', 'Would']} />
            <tbody>
              {dryRun.results.slice(0, 100).map((res, i) => (
                <tr key={i}>
                  <td>{formatTime(res.time)}</td>
                  <td>{res.deviceId}</td>
                  <td>{res.matched ? 'yes' : res.error || 'no'}</td>
                  <td>{res.actions.map((a) => `${a.kind} ${a.target}${a.error ? ` (${a.error})` : ''}`).join('; ')}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Deliveries and dead letters</h3>
          <DeliveryTable deliveries={deliveries} />
        </>
      )}
    </div>
  );
}

/** Notification channels: webhook, e-mail, NATS subject. */
function ChannelsCard() {
  const { canOperate } = useAbilities();
  const [channels, setChannels] = useState<NotificationChannel[]>([]);
  const [draft, setDraft] = useState({ name: '', kind: 'email', target: '', perMinute: 60 });
  const [log, setLog] = useState<Delivery[] | undefined>();
  const [error, setError] = useState('');
  const [reload, setReload] = useState(0);
  useEffect(() => {
    api.channels
      .listNotificationChannels({ page: { pageSize: 500 } })
      .then((res) => setChannels(res.channels))
      .catch((err) => setError(errorMessage(err)));
  }, [reload]);
  async function submit(event: FormEvent) {
    event.preventDefault();
    setError('');
    const kind =
      draft.kind === 'email'
        ? { case: 'email' as const, value: { to: commaList(draft.target) } }
        : draft.kind === 'nats'
          ? { case: 'nats' as const, value: { topic: draft.target } }
          : { case: 'webhook' as const, value: { url: draft.target, secret: '' } };
    try {
      await api.channels.createNotificationChannel({ channel: { name: draft.name, kind, rateLimitPerMinute: draft.perMinute } });
      setReload((n) => n + 1);
    } catch (err) {
      setError(errorMessage(err));
    }
  }
  return (
    <div className="card">
      <h2>Notification channels</h2>
      {canOperate && (
        <form className="inline-form" onSubmit={submit} aria-label="Create channel">
          <input aria-label="channel name" placeholder="name" value={draft.name} onChange={(e) => setDraft({ ...draft, name: e.target.value })} required />
          <select aria-label="channel kind" value={draft.kind} onChange={(e) => setDraft({ ...draft, kind: e.target.value })}>
            <option value="email">e-mail</option>
            <option value="webhook">webhook</option>
            <option value="nats">NATS subject</option>
          </select>
          <input aria-label="channel target" placeholder="addresses, URL or topic" value={draft.target} onChange={(e) => setDraft({ ...draft, target: e.target.value })} required />
          <input aria-label="per minute" type="number" min={1} value={draft.perMinute} onChange={(e) => setDraft({ ...draft, perMinute: Number(e.target.value) })} />
          <button type="submit">Create channel</button>
        </form>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      <table data-testid="channel-list">
        <TableHead columns={['ID', 'Name', 'Kind', 'Per minute', '']} />
        <tbody>
          {channels.map((c) => (
            <tr key={c.id}>
              <td>
                <code>{c.id}</code>
              </td>
              <td>{c.name}</td>
              <td>{c.kind.case}</td>
              <td>{c.rateLimitPerMinute}</td>
              <td>
                <button className="secondary" onClick={() => api.channels.listChannelDeliveries({ channelId: c.id }).then((res) => setLog(res.deliveries), (err) => setError(errorMessage(err)))}>
                  Deliveries
                </button>
                {canOperate && (
                  <ConfirmButton
                    label="Delete"
                    question={`Delete channel ${c.name}?`}
                    onConfirm={() => api.channels.deleteNotificationChannel({ id: c.id }).then(() => setReload((n) => n + 1), (err) => setError(errorMessage(err)))}
                  />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {log && <DeliveryTable deliveries={log} />}
    </div>
  );
}

/** The rules page: CEL rules with their counters, dry runs and delivery logs, and notification channels. */
export function RulesPage() {
  return (
    <>
      <RulesCard />
      <ChannelsCard />
    </>
  );
}
