import { useMemo, useState } from 'react';
import { Device } from '../../../gen/es/iot/device/v1/device_pb';
import { ConfirmButton } from './components/confirm-button';
import { ErrorText, useListPage } from './components/list-page';
import { TableHead } from './components/table-head';
import { api, errorMessage } from './api';
import { GroupHistoryChart } from './group-history';
import { parseLabels } from './devices';
import { useAbilities } from './principal';

const labelText = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');

/** Groups of the tenant (saved label selectors) and the devices each matches now. */
export function GroupsPage() {
  const { canOperate } = useAbilities();
  const { items: groups, error, setError, act, submit } = useListPage(async () => (await api.groups.listGroups({ page: { pageSize: 1000 } })).groups);
  const [members, setMembers] = useState<{ groupId: string; devices: Device[] }>();
  const [form, setForm] = useState({ name: '', labels: '', deviceType: '' });
  const memberNames = useMemo(() => Object.fromEntries((members?.devices ?? []).map((d) => [d.id, d.name])), [members]);

  async function show(groupId: string) {
    try {
      setMembers({ groupId, devices: (await api.groups.listGroupDevices({ id: groupId, page: { pageSize: 1000 } })).devices });
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const create = submit(async () => {
    await api.groups.createGroup({ group: { name: form.name, selector: { matchLabels: parseLabels(form.labels), deviceTypeId: form.deviceType } } });
    setForm({ name: '', labels: '', deviceType: '' });
  });

  const remove = (id: string) =>
    act(async () => {
      await api.groups.deleteGroup({ id });
      if (members?.groupId === id) setMembers(undefined);
    });

  return (
    <section>
      <h1>Groups</h1>
      <ErrorText error={error} />
      <table data-testid="group-list">
        <TableHead columns={['Name', 'Labels', 'Device type', '']} />
        <tbody>
          {groups.map((g) => (
            <tr key={g.id} data-testid={`group-${g.name}`}>
              <td>{g.name}</td>
              <td>{labelText(g.selector?.matchLabels ?? {})}</td>
              <td>{g.selector?.deviceTypeId}</td>
              <td>
                <button onClick={() => void show(g.id)}>Devices</button> {canOperate && <ConfirmButton label="Delete" question={`Delete group ${g.name}? Its devices stay.`} onConfirm={() => remove(g.id)} />}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {members && (
        <div data-testid="group-members">
          <h2>{groups.find((g) => g.id === members.groupId)?.name}: {members.devices.length} devices</h2>
          <ul>
            {members.devices.map((d) => (
              <li key={d.id}>
                <a href={`#/devices/${encodeURIComponent(d.id)}`}>{d.name}</a> <span className="muted">{d.type}</span>
              </li>
            ))}
          </ul>
          <GroupHistoryChart key={members.groupId} groupId={members.groupId} deviceNames={memberNames} />
        </div>
      )}
      {canOperate && (
        <form className="inline-form" onSubmit={create} aria-label="create group" data-testid="create-group">
          <input value={form.name} placeholder="name" aria-label="Name" onChange={(e) => setForm({ ...form, name: e.target.value })} />
          <input value={form.labels} placeholder="floor=2, zone=a" aria-label="Labels" onChange={(e) => setForm({ ...form, labels: e.target.value })} />
          <input value={form.deviceType} placeholder="device type (optional)" aria-label="Device type" onChange={(e) => setForm({ ...form, deviceType: e.target.value })} />
          <button type="submit">Create group</button>
        </form>
      )}
    </section>
  );
}
