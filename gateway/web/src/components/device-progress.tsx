import { useEffect } from 'react';
import { JobDeviceState } from '../../../../gen/es/iot/device/v1/jobs_pb';
import { errorMessage } from '../api';
import { TableHead } from './table-head';

/** `timed out`, `sent`, … for a device's job state. */
export const deviceStateName = (s: JobDeviceState) => JobDeviceState[s]?.replace('JOB_DEVICE_STATE_', '').toLowerCase().replace('_', ' ') ?? '';

/** One device's row in a job's or campaign's progress. */
export interface DeviceProgressRow {
  deviceId: string;
  state: JobDeviceState;
  reason: string;
  /** A campaign's stage (`canary`, `rollout`); absent for a job. */
  stage?: string;
}

/** The per-device table of a job or campaign: each device (linked to its page), its state and reason, and the stage where there is one. */
export function DeviceProgressTable({ devices, withStage = false }: { devices: DeviceProgressRow[]; withStage?: boolean }) {
  return (
    <table data-testid="device-progress">
      <TableHead columns={withStage ? ['Device', 'Stage', 'State', 'Reason'] : ['Device', 'State', 'Reason']} />
      <tbody>
        {devices.map((d) => (
          <tr key={d.deviceId}>
            <td>
              <a href={`#/devices/${encodeURIComponent(d.deviceId)}`}>{d.deviceId}</a>
            </td>
            {withStage && <td>{d.stage}</td>}
            <td>{deviceStateName(d.state)}</td>
            <td>{d.reason}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/**
 * Follows a job or campaign live: `watch` is its server stream (the current
 * state first, ending when it ends); on every message `onUpdate` gets it and
 * the device list is read again for `onDevices`. Stops when `id` changes or
 * the page goes away; stream errors go to `onError`.
 */
export function useLiveProgress<T, D>(
  id: string | undefined,
  watch: (id: string, signal: AbortSignal) => AsyncIterable<T | undefined>,
  listDevices: (id: string) => Promise<D[]>,
  onUpdate: (item: T) => void,
  onDevices: (devices: D[]) => void,
  onError: (message: string) => void,
): void {
  useEffect(() => {
    if (!id) return;
    const abort = new AbortController();
    void (async () => {
      try {
        for await (const item of watch(id, abort.signal)) {
          if (!item) continue;
          onUpdate(item);
          onDevices(await listDevices(id));
        }
      } catch (err) {
        if (!abort.signal.aborted) onError(errorMessage(err));
      }
    })();
    return () => abort.abort();
    // The callbacks are the page's setters; only the id restarts the stream.
  }, [id]);
}

/** The `pick`ed part of each message of a server stream. */
export async function* mapStream<M, T>(stream: AsyncIterable<M>, pick: (message: M) => T | undefined): AsyncIterable<T | undefined> {
  for await (const message of stream) yield pick(message);
}
