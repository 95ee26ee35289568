import { FormEvent, useEffect, useMemo, useRef, useState } from 'react';
import { useSearchParams } from 'react-router';
import { DataPoint, StreamLiveResponse } from '../../../gen/es/iot/monitoring/v1/telemetry_pb';
import { TableHead } from './components/table-head';
import { api, errorMessage, followStream } from './api';
import { displayValue } from './device';
import { commaList, epochSeconds, formatTime } from './format';
import { GroupSelect } from './components/group-select';
import { TimeChart, toChartData } from './time-chart';

/** Devices drawn per metric at most: the first heard from; the others are counted, not drawn. */
export const MAX_LIVE_SERIES = 8;
/** Metrics shown at most (the first heard from); naming metrics shows others. */
const MAX_LIVE_METRICS = 12;
/** Seconds of points a line keeps. */
const LIVE_WINDOW_SECONDS = 10 * 60;
/** Points a line keeps at most (a fast device's oldest go first). */
const MAX_POINTS_PER_LINE = 1000;
/** Devices (or metrics) counted beyond the shown ones at most; the count then reads "at least". */
const MAX_COUNTED = 10_000;
/** Redraws at most this often, however fast frames arrive. */
const REDRAW_MS = 250;
/** The window moves on this often when no frame arrives. */
const TICK_MS = 5000;
/** Seconds of room after now, so the newest point is not on the chart's border. */
const RIGHT_MARGIN_SECONDS = 5;

/** One metric of the live view: the drawn devices' recent numbers and newest points, and how many others send it. */
interface MetricLive {
  /** Numeric samples of each drawn device, oldest first. */
  lines: Map<string, { time: number; value: number }[]>;
  /** Newest point of each drawn device (numbers, strings and booleans). */
  latest: Map<string, DataPoint>;
  /** Devices sending the metric that are not drawn (at most MAX_COUNTED). */
  others: Set<string>;
}

/**
 * The points a live view keeps: per metric (at most MAX_LIVE_METRICS), the
 * first MAX_LIVE_SERIES devices heard from, each line at most
 * LIVE_WINDOW_SECONDS and MAX_POINTS_PER_LINE long, whatever the group's size.
 */
class LiveBuffer {
  readonly metrics = new Map<string, MetricLive>();
  /** Metrics heard of beyond MAX_LIVE_METRICS. */
  readonly otherMetrics = new Set<string>();
  droppedPoints = 0;

  add(frame: StreamLiveResponse): void {
    this.droppedPoints += Number(frame.droppedPoints);
    for (const p of frame.points) {
      let metric = this.metrics.get(p.metric);
      if (!metric) {
        if (this.metrics.size >= MAX_LIVE_METRICS) {
          if (this.otherMetrics.size < MAX_COUNTED) this.otherMetrics.add(p.metric);
          continue;
        }
        metric = { lines: new Map(), latest: new Map(), others: new Set() };
        this.metrics.set(p.metric, metric);
      }
      const known = metric.latest.get(p.deviceId);
      if (!known && metric.latest.size >= MAX_LIVE_SERIES) {
        if (metric.others.size < MAX_COUNTED) metric.others.add(p.deviceId);
        continue;
      }
      if (!known || epochSeconds(known.time) <= epochSeconds(p.time)) metric.latest.set(p.deviceId, p);
      if (p.value?.kind.case === 'numberValue') {
        const line = metric.lines.get(p.deviceId) ?? [];
        line.push({ time: epochSeconds(p.time), value: p.value.kind.value });
        metric.lines.set(p.deviceId, line);
      }
    }
  }

  /** Drops what is older than the window, or beyond a line's length. */
  trim(now: number): void {
    const cutoff = now - LIVE_WINDOW_SECONDS;
    for (const metric of this.metrics.values()) {
      for (const line of metric.lines.values()) {
        let old = 0;
        while (old < line.length && line[old].time < cutoff) old++;
        line.splice(0, Math.max(old, line.length - MAX_POINTS_PER_LINE));
      }
    }
  }
}

/** Device names by id for the ids given (asked once each; the id stands in until its name arrives). */
function useDeviceNames(ids: string[]): Record<string, string> {
  const [names, setNames] = useState<Record<string, string>>({});
  const asked = useRef(new Set<string>());
  const key = ids.join(',');
  useEffect(() => {
    const abort = new AbortController();
    const pending = ids.filter((id) => !asked.current.has(id));
    for (const id of pending) {
      asked.current.add(id);
      api.devices.getDevice({ id }, { signal: abort.signal }).then(
        (res) => setNames((n) => ({ ...n, [id]: res.device?.name || id })),
        // A device deleted meanwhile keeps its id as its label; one not asked to the end is asked again.
        () => abort.signal.aborted && asked.current.delete(id),
      );
    }
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return names;
}

/** "3", or "at least 10000" once the count reached its bound. */
const countText = (n: number) => (n >= MAX_COUNTED ? `at least ${n}` : String(n));

/** One metric: a line per drawn device (numbers), or the drawn devices' newest values (strings, booleans). */
function LiveMetric({ metric, live, now, names }: { metric: string; live: MetricLive; now: number; names: Record<string, string> }) {
  const drawn = [...live.latest.keys()].sort();
  const data = useMemo(() => toChartData([...live.lines].flatMap(([deviceId, line]) => line.map((s) => ({ time: s.time, series: deviceId, value: s.value })))), [live, now]); // eslint-disable-line react-hooks/exhaustive-deps
  const total = drawn.length + live.others.size;
  return (
    <div className="card" data-testid={`live-metric-${metric}`} data-drawn={drawn.length} data-devices={total}>
      <h3>{metric}</h3>
      <p className="muted small" data-testid={`live-count-${metric}`}>
        {live.others.size > 0 ? `${drawn.length} of ${countText(total)} devices shown (the first heard from)` : `${drawn.length} ${drawn.length === 1 ? 'device' : 'devices'}`}
      </p>
      {data.series.length > 0 ? (
        <TimeChart data={data} height={200} testId={`live-chart-${metric}`} xRange={[now - LIVE_WINDOW_SECONDS, now + RIGHT_MARGIN_SECONDS]} seriesLabels={names} markPoints attributes={{ 'series-ids': data.series.join(',') }} />
      ) : (
        <table aria-label={`${metric} by device`}>
          <TableHead columns={['Device', 'Value', 'Time']} />
          <tbody>
            {drawn.map((deviceId) => (
              <tr key={deviceId} data-testid={`live-value-${metric}-${deviceId}`}>
                <td>
                  <a href={`#/devices/${encodeURIComponent(deviceId)}`}>{names[deviceId] ?? deviceId}</a>
                </td>
                <td>{displayValue(live.latest.get(deviceId))}</td>
                <td>{formatTime(live.latest.get(deviceId)?.time)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** What the view streams: a group, or devices by id; optionally only some metrics. */
interface LiveSource {
  groupId: string;
  deviceIds: string[];
  metrics: string[];
}

/** StreamLive for the source, one chart per metric; the server's refusal (an unknown group, a bad id) shown as it says. */
function LiveView({ source }: { source: LiveSource }) {
  const buffer = useRef(new LiveBuffer());
  const [now, setNow] = useState(Date.now() / 1000);
  const [connected, setConnected] = useState(false);
  const [subscribed, setSubscribed] = useState(false);
  const [error, setError] = useState('');

  useEffect(() => {
    const abort = new AbortController();
    let redraw: ReturnType<typeof setTimeout> | undefined;
    const draw = () => {
      const at = Date.now() / 1000;
      buffer.current.trim(at);
      setNow(at);
    };
    const scheduleRedraw = () => {
      redraw ??= setTimeout(() => {
        redraw = undefined;
        draw();
      }, REDRAW_MS);
    };
    const tick = setInterval(draw, TICK_MS);
    void followStream(
      (signal) => api.telemetry.streamLive({ groupIds: source.groupId ? [source.groupId] : [], deviceIds: source.deviceIds, metrics: source.metrics }, { signal }),
      (frame) => {
        // The first frame is empty: the server's subscription is in place.
        setSubscribed(true);
        setError('');
        buffer.current.add(frame);
        scheduleRedraw();
      },
      abort.signal,
      (up) => {
        setConnected(up);
        if (!up) setSubscribed(false);
      },
      (err) => setError(errorMessage(err)),
    );
    return () => {
      abort.abort();
      clearInterval(tick);
      if (redraw) clearTimeout(redraw);
    };
  }, [source]);

  const { metrics, otherMetrics, droppedPoints } = buffer.current;
  const shown = [...metrics.keys()].sort();
  const names = useDeviceNames([...new Set(shown.flatMap((m) => [...metrics.get(m)!.latest.keys()]))].sort());
  return (
    <div data-testid="live-view" data-subscribed={subscribed}>
      <p>
        <span className={`live-dot ${connected && subscribed ? 'on' : ''}`} title={subscribed ? 'live' : 'connecting'} /> {subscribed ? `live, the last ${LIVE_WINDOW_SECONDS / 60} minutes` : 'connecting…'}
      </p>
      {error && <p className="error" role="alert" data-testid="live-error">{error}</p>}
      {droppedPoints > 0 && (
        <p className="warning" role="status">
          {droppedPoints} points were dropped by the server because this page read too slowly: the charts miss them.
        </p>
      )}
      {otherMetrics.size > 0 && (
        <p className="muted" role="status">
          {countText(otherMetrics.size)} more metrics are not shown ({[...otherMetrics].slice(0, 5).join(', ')}…): name the metrics to see them.
        </p>
      )}
      {subscribed && shown.length === 0 && <p className="muted">Waiting for telemetry…</p>}
      <div className="charts">
        {shown.map((m) => (
          <LiveMetric key={m} metric={m} live={metrics.get(m)!} now={now} names={names} />
        ))}
      </div>
    </div>
  );
}

/**
 * Live telemetry of a device group (or of devices by id) as it arrives: one
 * chart per metric with a line per device, at most MAX_LIVE_SERIES of them.
 * The source is in the URL (`#/live?group=<id>&metrics=a,b`), so a group's
 * live view can be linked and each new source starts from nothing.
 */
export function LivePage() {
  const [params, setParams] = useSearchParams();
  const groupId = params.get('group') ?? '';
  const deviceIds = params.get('devices') ?? '';
  const metrics = params.get('metrics') ?? '';
  const [form, setForm] = useState({ kind: deviceIds ? 'devices' : 'group', groupId, deviceIds, metrics });
  const [error, setError] = useState('');
  const source = useMemo<LiveSource | undefined>(
    () => (groupId || deviceIds ? { groupId, deviceIds: commaList(deviceIds), metrics: commaList(metrics) } : undefined),
    [groupId, deviceIds, metrics],
  );

  function show(event: FormEvent) {
    event.preventDefault();
    setError('');
    const next = new URLSearchParams();
    if (form.kind === 'group') {
      if (!form.groupId) return setError('choose a group');
      next.set('group', form.groupId);
    } else {
      if (commaList(form.deviceIds).length === 0) return setError('name at least one device id');
      next.set('devices', commaList(form.deviceIds).join(','));
    }
    if (commaList(form.metrics).length > 0) next.set('metrics', commaList(form.metrics).join(','));
    setParams(next);
  }

  return (
    <section>
      <h1>Live</h1>
      <form className="inline-form" onSubmit={show} aria-label="live source">
        <label>
          Devices from
          <select aria-label="selection" value={form.kind} onChange={(e) => setForm({ ...form, kind: e.target.value })}>
            <option value="group">a group</option>
            <option value="devices">device ids</option>
          </select>
        </label>
        {form.kind === 'group' ? (
          <GroupSelect label="group" emptyLabel="choose a group" value={form.groupId} onChange={(id) => setForm({ ...form, groupId: id })} onError={setError} />
        ) : (
          <input aria-label="device ids" placeholder="device ids, comma-separated" value={form.deviceIds} onChange={(e) => setForm({ ...form, deviceIds: e.target.value })} />
        )}
        <input aria-label="metrics" placeholder="metrics (all when empty)" value={form.metrics} onChange={(e) => setForm({ ...form, metrics: e.target.value })} />
        <button type="submit">Show</button>
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {source ? <LiveView key={params.toString()} source={source} /> : <p className="muted">Pick a group or devices to watch their telemetry as it arrives.</p>}
    </section>
  );
}
