import { useEffect, useRef, useState } from 'react';
import { Group } from '../../../../gen/es/iot/device/v1/groups_pb';
import { api, errorMessage } from '../api';

/**
 * A choice of one of the tenant's device groups (the first 1,000) by name, or
 * none (`emptyLabel`): a rule's, alert rule's, export's or live view's source.
 * A failure to list them goes to `onError` (the page shows it).
 */
export function GroupSelect({ value, onChange, name, label = 'device group', emptyLabel = 'any group', onError }: { value: string; onChange: (groupId: string) => void; name?: string; label?: string; emptyLabel?: string; onError?: (message: string) => void }) {
  const [groups, setGroups] = useState<Group[]>([]);
  const reportError = useRef(onError);
  reportError.current = onError;
  useEffect(() => {
    const abort = new AbortController();
    api.groups.listGroups({ page: { pageSize: 1000 } }, { signal: abort.signal }).then(
      (res) => setGroups(res.groups),
      (err) => !abort.signal.aborted && reportError.current?.(errorMessage(err)),
    );
    return () => abort.abort();
  }, []);
  return (
    <select aria-label={label} name={name} value={value} onChange={(e) => onChange(e.target.value)}>
      <option value="">{emptyLabel}</option>
      {/* A chosen group not (yet) listed stays chosen, shown by its id, rather than reading as the empty choice. */}
      {value && !groups.some((g) => g.id === value) && <option value={value}>{value}</option>}
      {groups.map((g) => (
        <option key={g.id} value={g.id}>
          {g.name}
        </option>
      ))}
    </select>
  );
}
