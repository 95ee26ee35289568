import { fromJson, JsonObject } from '@bufbuild/protobuf';
import { useEffect, useState } from 'react';
import { DeviceTypeSchema, MetricKind, UnknownMetricPolicy } from '../../../gen/es/iot/device/v1/device_types_pb';
import { ConfirmButton } from './components/confirm-button';
import { ErrorText, useListPage } from './components/list-page';
import { TableHead } from './components/table-head';
import { api } from './api';
import { pretty } from './format';
import { useAbilities } from './principal';

/** What the create form starts with: a complete type in proto3 JSON, to edit rather than to write from nothing. */
const EXAMPLE = {
  name: 'thermostat',
  displayName: 'Thermostat',
  metrics: [{ name: 'temperature', displayName: 'Temperature', unit: '°C', kind: 'METRIC_KIND_GAUGE', min: -40, max: 85 }],
  commands: [{ name: 'set-point', parametersSchema: { type: 'object', properties: { celsius: { type: 'number', minimum: 5, maximum: 30 } }, required: ['celsius'] } }],
  desiredSchema: { type: 'object', properties: { mode: { enum: ['heat', 'cool', 'off'] } } },
  firmwareVersion: '1.0.0',
  unknownMetricPolicy: 'UNKNOWN_METRIC_POLICY_ACCEPT',
};

function range(min: number | undefined, max: number | undefined): string {
  if (min === undefined && max === undefined) return '';
  return `${min ?? '−∞'} … ${max ?? '∞'}`;
}

/** Device types of the tenant: metrics with units and ranges, commands, schemas, firmware; operators create them from proto3 JSON. */
export function DeviceTypesPage() {
  const { canOperate } = useAbilities();
  const { items: types, error, act, submit } = useListPage(async () => (await api.deviceTypes.listDeviceTypes({ page: { pageSize: 1000 } })).deviceTypes);
  const [draft, setDraft] = useState(JSON.stringify(EXAMPLE, null, 2));
  const [open, setOpen] = useState<string>();

  const create = submit(() => api.deviceTypes.createDeviceType({ deviceType: fromJson(DeviceTypeSchema, JSON.parse(draft) as JsonObject) }));
  const remove = (id: string) => act(() => api.deviceTypes.deleteDeviceType({ id }));

  return (
    <section>
      <h1>Device types</h1>
      <ErrorText error={error} />
      <table data-testid="device-type-list">
        <TableHead columns={['Name', 'Metrics', 'Commands', 'Firmware', 'Unknown metrics', '']} />
        <tbody>
          {types.map((t) => (
            <tr key={t.id} data-testid={`device-type-${t.name}`}>
              <td>
                <button className="link" onClick={() => setOpen(open === t.id ? undefined : t.id)}>
                  {t.displayName || t.name}
                </button>{' '}
                <span className="muted">{t.name}</span>
                {open === t.id && <pre data-testid="device-type-schemas">{pretty({ desiredSchema: t.desiredSchema, reportedSchema: t.reportedSchema, commands: t.commands })}</pre>}
              </td>
              <td>
                {t.metrics.map((m) => (
                  <div key={m.name} data-testid={`metric-${t.name}-${m.name}`}>
                    {m.displayName || m.name} <span className="muted">[{m.unit}]</span> {MetricKind[m.kind].toLowerCase()} {range(m.min, m.max)}
                  </div>
                ))}
              </td>
              <td>{t.commands.map((c) => c.name).join(', ')}</td>
              <td>{t.firmwareVersion}</td>
              <td>{t.unknownMetricPolicy === UnknownMetricPolicy.DEAD_LETTER ? 'dead-letter' : 'accept'}</td>
              <td>{canOperate && <ConfirmButton label="Delete" question={`Delete device type ${t.name}?`} onConfirm={() => remove(t.id)} />}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {types.length === 0 && <p className="muted">No device types yet.</p>}
      {canOperate && (
        <form onSubmit={create} aria-label="create device type" data-testid="create-device-type">
          <h2>New device type (proto3 JSON)</h2>
          <textarea rows={16} cols={90} value={draft} onChange={(e) => setDraft(e.target.value)} aria-label="device type JSON" />
          <div>
            <button type="submit">Create</button>
          </div>
        </form>
      )}
    </section>
  );
}

/**
 * Metric name → unit of a device's type (empty for an untyped device), for
 * pages that show a device's values: `useMetricUnits(device.deviceTypeId)`.
 */
export function useMetricUnits(deviceTypeId: string | undefined): Record<string, string> {
  const [units, setUnits] = useState<Record<string, string>>({});
  useEffect(() => {
    if (!deviceTypeId) return setUnits({});
    let live = true;
    api.deviceTypes
      .getDeviceType({ id: deviceTypeId })
      .then((res) => live && setUnits(Object.fromEntries((res.deviceType?.metrics ?? []).map((m) => [m.name, m.unit]))))
      .catch(() => live && setUnits({}));
    return () => {
      live = false;
    };
  }, [deviceTypeId]);
  return units;
}
