import { FormEvent, useEffect, useState } from 'react';
import { useSearchParams } from 'react-router';
import { DeadLetter } from '../../../gen/es/iot/monitoring/v1/dead_letters_pb';
import { api, errorMessage } from './api';
import { formatTime } from './format';
import { useAbilities } from './principal';

const PAGE_SIZE = 100;

/** The first bytes of a payload as text a person can read (other bytes as `·`). */
function preview(payload: Uint8Array): string {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(payload.subarray(0, 120));
  return text.replace(/[^\x20-\x7e\u00a0-\uffff]/g, '·');
}

/**
 * Dead letters: the telemetry the platform refused, per device and reason,
 * oldest first; operators replay the selected ones after a fix (a device
 * registered, a constraint changed).
 */
export function DeadLettersPage() {
  const { canOperate } = useAbilities();
  const [params] = useSearchParams();
  // The overview links here with ?reason=… (and a device page could with ?deviceId=…).
  const [filter, setFilter] = useState({ deviceId: params.get('deviceId') ?? '', reason: params.get('reason') ?? '' });
  const [applied, setApplied] = useState(filter);
  const [letters, setLetters] = useState<DeadLetter[]>([]);
  const [next, setNext] = useState('');
  const [selected, setSelected] = useState<Set<bigint>>(new Set());
  const [error, setError] = useState('');
  const [notice, setNotice] = useState('');
  const [reload, setReload] = useState(0);

  async function load(pageToken: string, signal?: AbortSignal) {
    const res = await api.deadLetters.listDeadLetters({ page: { pageSize: PAGE_SIZE, pageToken }, deviceId: applied.deviceId, reason: applied.reason }, { signal });
    setLetters((before) => (pageToken ? [...before, ...res.deadLetters] : res.deadLetters));
    setNext(res.page?.nextPageToken ?? '');
  }

  useEffect(() => {
    const abort = new AbortController();
    setError('');
    setSelected(new Set());
    load('', abort.signal).catch((err) => !abort.signal.aborted && setError(errorMessage(err)));
    return () => abort.abort();
  }, [applied, reload]);

  function search(event: FormEvent) {
    event.preventDefault();
    setApplied({ ...filter });
  }

  async function replay() {
    setError('');
    try {
      const res = await api.deadLetters.replayDeadLetters({ sequences: [...selected] });
      const skipped = [...res.truncatedSequences.map((s) => `${s} (truncated)`), ...res.notFoundSequences.map((s) => `${s} (gone)`)];
      setNotice(`replayed ${res.replayedCount}${skipped.length ? `; not replayed: ${skipped.join(', ')}` : ''}`);
      setReload((n) => n + 1);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const toggle = (sequence: bigint) =>
    setSelected((before) => {
      const after = new Set(before);
      if (!after.delete(sequence)) after.add(sequence);
      return after;
    });

  return (
    <section>
      <h1>Dead letters</h1>
      <p className="muted">Telemetry the platform refused, with the reason, oldest first. Kept 30 days or up to the stream's size, oldest discarded first.</p>
      <form className="inline-form" onSubmit={search} aria-label="filter dead letters">
        <input aria-label="device id" name="dead-letter-device" placeholder="device id" value={filter.deviceId} onChange={(e) => setFilter({ ...filter, deviceId: e.target.value })} />
        <input aria-label="reason" name="dead-letter-reason" placeholder="reason (e.g. unknown_device)" value={filter.reason} onChange={(e) => setFilter({ ...filter, reason: e.target.value })} />
        <button type="submit">Show</button>
        {canOperate && (
          <button type="button" disabled={selected.size === 0} onClick={() => void replay()}>
            Replay {selected.size || ''}
          </button>
        )}
      </form>
      {notice && <p role="status">{notice}</p>}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table data-testid="dead-letter-list">
        <thead>
          <tr>
            {canOperate && <th />}
            <th>#</th>
            <th>Device</th>
            <th>Reason</th>
            <th>Detail</th>
            <th>Received</th>
            <th>Size</th>
            <th>Payload</th>
          </tr>
        </thead>
        <tbody>
          {letters.length === 0 ? (
            <tr>
              <td colSpan={8} className="muted">
                No dead letters.
              </td>
            </tr>
          ) : (
            letters.map((d) => (
              <tr key={String(d.sequence)} data-reason={d.reason}>
                {canOperate && (
                  <td>
                    <input type="checkbox" aria-label={`select ${d.sequence}`} disabled={d.truncated} checked={selected.has(d.sequence)} onChange={() => toggle(d.sequence)} />
                  </td>
                )}
                <td>{String(d.sequence)}</td>
                <td>{d.deviceId || '—'}</td>
                <td>
                  {d.reason}
                  {d.sqlstate && <span className="muted"> ({d.sqlstate})</span>}
                </td>
                <td>{d.detail}</td>
                <td>{formatTime(d.receiveTime)}</td>
                <td>
                  {String(d.size)}
                  {d.truncated && <span className="muted"> (truncated)</span>}
                </td>
                <td>
                  <code>{preview(d.payload)}</code>
                </td>
              </tr>
            ))
          )}
        </tbody>
      </table>
      {next && (
        <button type="button" className="secondary" onClick={() => void load(next).catch((err) => setError(errorMessage(err)))}>
          More
        </button>
      )}
    </section>
  );
}
