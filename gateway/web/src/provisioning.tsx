import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { useState } from 'react';
import { ProvisioningKeyState } from '../../../gen/es/iot/device/v1/provisioning_pb';
import { ConfirmButton } from './components/confirm-button';
import { SecretPanel } from './components/secret-panel';
import { ErrorText, useListPage } from './components/list-page';
import { TableHead } from './components/table-head';
import { api } from './api';
import { formatTime } from './format';
import { parseLabels } from './devices';
import { useAbilities } from './principal';

/** Provisioning keys of the tenant: admins create (the secret is shown once) and revoke them; everyone sees their use. */
export function ProvisioningPage() {
  const { canAdmin } = useAbilities();
  const { items: keys, error, act, submit } = useListPage(async () => (await api.provisioning.listProvisioningKeys({ page: { pageSize: 1000 } })).provisioningKeys);
  const [form, setForm] = useState({ name: '', deviceType: '', labels: '', usageLimit: '', expiresDays: '' });
  const [secret, setSecret] = useState('');

  const create = submit(async () => {
    const days = Number(form.expiresDays);
    const res = await api.provisioning.createProvisioningKey({
      provisioningKey: {
        name: form.name,
        deviceTypeId: form.deviceType,
        labels: parseLabels(form.labels),
        usageLimit: BigInt(form.usageLimit || '0'),
        expireTime: days > 0 ? timestampFromDate(new Date(Date.now() + days * 86_400_000)) : undefined,
      },
    });
    setSecret(res.secret);
  });

  const revoke = (id: string) => act(() => api.provisioning.revokeProvisioningKey({ id }));

  const field = (name: keyof typeof form, label: string, placeholder = '') => (
    <label>
      {label} <input value={form[name]} placeholder={placeholder} onChange={(e) => setForm({ ...form, [name]: e.target.value })} aria-label={label} />
    </label>
  );
  return (
    <section>
      <h1>Provisioning keys</h1>
      <p className="muted">
        A device holding a key registers itself: <code>POST /v1/provisioning:claim</code> with the key and its serial number returns its device and credential.
      </p>
      <ErrorText error={error} />
      {secret && (
        <SecretPanel testId="provisioning-secret" warning="This key is shown once. Copy it now; only its hash is kept." label="Provisioning key" secret={secret} onClose={() => setSecret('')} />
      )}
      <table data-testid="provisioning-key-list">
        <TableHead columns={['Name', 'Key', 'State', 'Devices', 'Claims', 'Labels', 'Expires', '']} />
        <tbody>
          {keys.map((k) => (
            <tr key={k.id} data-testid={`provisioning-key-${k.id}`}>
              <td>{k.name}</td>
              <td>
                <code>{k.secretPrefix}…</code>
              </td>
              <td>{ProvisioningKeyState[k.state].toLowerCase()}</td>
              <td>
                {String(k.deviceCount)}
                {k.usageLimit > 0n ? ` / ${k.usageLimit}` : ''}
              </td>
              <td>{String(k.claimCount)}</td>
              <td>{Object.entries(k.labels).map(([key, v]) => `${key}=${v}`).join(', ')}</td>
              <td>{k.expireTime ? formatTime(k.expireTime) : 'never'}</td>
              <td>{canAdmin && k.state === ProvisioningKeyState.ACTIVE && <ConfirmButton label="Revoke" question={`Revoke ${k.name || k.id}? Devices can no longer claim with it.`} onConfirm={() => revoke(k.id)} />}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {canAdmin && (
        <form className="inline-form" onSubmit={create} aria-label="create provisioning key" data-testid="create-provisioning-key">
          {field('name', 'Name', 'factory line 1')}
          {field('deviceType', 'Device type', 'name or id')}
          {field('labels', 'Labels', 'site=plant-7, line=1')}
          {field('usageLimit', 'Most devices', '0 = no limit')}
          {field('expiresDays', 'Expires in days', 'never')}
          <button type="submit">Create key</button>
        </form>
      )}
    </section>
  );
}
