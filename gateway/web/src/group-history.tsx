import { FormEvent, useCallback, useEffect, useMemo, useState } from 'react';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { QueryGroupHistoryResponse } from '../../../gen/es/iot/monitoring/v1/telemetry_pb';
import { api, errorMessage } from './api';
import { epochSeconds } from './format';
import { TimeChart, toChartData } from './time-chart';

/** Pixels per bucket: the server is asked for as many buckets as the chart can show (QueryGroupHistory allows at most 1000). */
const PIXELS_PER_POINT = 3;
const MAX_POINTS = 1000;
/** Member lines drawn at most beside the group's average: eight lines, eight distinct colours (time-chart's palette). */
export const MAX_MEMBER_LINES = 7;

const RANGES = [
  { label: '1 h', seconds: 3600 },
  { label: '6 h', seconds: 6 * 3600 },
  { label: '24 h', seconds: 24 * 3600 },
  { label: '7 d', seconds: 7 * 24 * 3600 },
  { label: '30 d', seconds: 30 * 24 * 3600 },
];

/** What the chart asks for: a metric over the last `seconds`, with or without a line per member. */
interface Query {
  metric: string;
  seconds: number;
  perDevice: boolean;
}

/** The server's answer to one query (or its refusal), kept with the query so a stale one is never shown as the new one's. */
type Answer = { query: Query; error: string } | { query: Query; error?: undefined; response: QueryGroupHistoryResponse; range: [number, number] };

/** Chart line keys: the group's aggregates first (sorted before `device:`), then one per drawn member (`device:<id>`). */
const GROUP_LINES: Record<string, string> = { 'a:avg': 'average', 'b:min': 'min', 'c:max': 'max' };

/**
 * The lines of an answer: the group's average, minimum and maximum per
 * bucket; per device, the group's average and each drawn member's average
 * instead (the members' lines show the spread themselves).
 */
function samplesOf(response: QueryGroupHistoryResponse, perDevice: boolean) {
  const samples = response.buckets.flatMap((b) => {
    const time = epochSeconds(b.startTime);
    const group = [{ time, series: 'a:avg', value: b.avg }];
    return perDevice ? group : [...group, { time, series: 'b:min', value: b.min }, { time, series: 'c:max', value: b.max }];
  });
  for (const d of response.devices.slice(0, MAX_MEMBER_LINES)) for (const b of d.buckets) samples.push({ time: epochSeconds(b.startTime), series: `device:${d.deviceId}`, value: b.avg });
  return samples;
}

/**
 * One metric across a group's members now (QueryGroupHistory) over a picked
 * range: the average, minimum and maximum over all of them per bucket or,
 * per device, the average beside each member's own line (at most
 * MAX_MEMBER_LINES, by device id; the rest counted). Members' lines carry
 * their names from `deviceNames` (id → name).
 */
export function GroupHistoryChart({ groupId, deviceNames }: { groupId: string; deviceNames: Record<string, string> }) {
  const [form, setForm] = useState<Query>({ metric: '', seconds: 24 * 3600, perDevice: false });
  const [query, setQuery] = useState<Query>();
  const [width, setWidth] = useState(0);
  const [answer, setAnswer] = useState<Answer>();
  const onWidth = useCallback((w: number) => setWidth((old) => (Math.abs(old - w) > 20 ? w : old)), []);

  useEffect(() => {
    if (!query || width === 0) return;
    const abort = new AbortController();
    const end = Date.now() / 1000;
    const start = end - query.seconds;
    const maxPoints = Math.min(MAX_POINTS, Math.max(10, Math.floor(width / PIXELS_PER_POINT)));
    api.telemetry
      .queryGroupHistory(
        { groupId, metric: query.metric, timeRange: { start: timestampFromMs(Math.floor(start * 1000)), end: timestampFromMs(Math.ceil(end * 1000)) }, maxPoints, perDevice: query.perDevice },
        { signal: abort.signal },
      )
      .then(
        (response) => setAnswer({ query, response, range: [start, end] }),
        (err) => !abort.signal.aborted && setAnswer({ query, error: errorMessage(err) }),
      );
    return () => abort.abort();
  }, [groupId, query, width]);

  // Only the current query's answer is shown; while a new one loads, the chart is empty.
  const current = answer?.query === query ? answer : undefined;
  const shown = current && 'response' in current ? current : undefined;
  const data = useMemo(() => toChartData(shown ? samplesOf(shown.response, shown.query.perDevice) : []), [shown]);
  const labels = useMemo(() => Object.fromEntries(data.series.map((key) => [key, GROUP_LINES[key] ?? deviceNames[key.slice('device:'.length)] ?? key.slice('device:'.length)])), [data, deviceNames]);
  const show = (e: FormEvent) => {
    e.preventDefault();
    if (form.metric.trim()) setQuery({ ...form, metric: form.metric.trim() });
  };
  const reporting = shown?.response.devices.length ?? 0;
  const drawn = Math.min(reporting, MAX_MEMBER_LINES);

  return (
    <div className="card" data-testid="group-history">
      <h3>
        History {query && <span className="muted">{query.metric}</span>}{' '}
        {shown && (
          <span className="muted small" data-testid="group-history-summary">
            · {shown.response.memberCount} member devices{shown.response.bucketWidth && `, ${shown.response.bucketWidth.seconds}s buckets`}
            {shown.query.perDevice && (reporting > drawn ? `, ${drawn} of ${reporting} reporting members drawn (by id)` : `, ${reporting} reporting`)}
          </span>
        )}
      </h3>
      <form className="inline-form" onSubmit={show} aria-label="group history">
        <input value={form.metric} placeholder="metric" aria-label="Metric" onChange={(e) => setForm({ ...form, metric: e.target.value })} />
        <select aria-label="Range" value={form.seconds} onChange={(e) => setForm({ ...form, seconds: Number(e.target.value) })}>
          {RANGES.map((r) => (
            <option key={r.seconds} value={r.seconds}>
              {r.label}
            </option>
          ))}
        </select>
        <label>
          <input type="checkbox" checked={form.perDevice} onChange={(e) => setForm({ ...form, perDevice: e.target.checked })} /> per device
        </label>
        <button type="submit">Show</button>
      </form>
      {current?.error && (
        <p className="error" role="alert" data-testid="group-history-error">
          {current.error}
        </p>
      )}
      {query && !current?.error && (
        <TimeChart data={data} height={220} testId="group-history-chart" xRange={shown?.range} seriesLabels={labels} onWidth={onWidth} attributes={{ 'series-ids': data.series.join(','), loaded: shown ? 'true' : 'false' }} />
      )}
      {shown && data.series.length === 0 && (
        <p className="muted" data-testid="group-history-empty">
          No data for {shown.query.metric} from the group's members in this range.
        </p>
      )}
    </div>
  );
}
