import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Lines (a metric's, or a device's) over shared timestamps (seconds), as uPlot takes them. */
export interface ChartData {
  /** The key of each line, in column order. */
  series: string[];
  /** [timestamps, ...one value array per line] */
  columns: uPlot.AlignedData;
}

/** Eight distinct colours: a live chart's at most eight lines each get their own. */
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

/** What a chart shows and how it reports a drag: `onZoom(start, end)` in epoch seconds. */
export interface TimeChartProps {
  data: ChartData;
  height?: number;
  testId?: string;
  xRange?: [number, number];
  /** Axis label, such as the unit. */
  yLabel?: string;
  /** A line's legend label from its key (default: the key itself). */
  seriesLabels?: Record<string, string>;
  /** Marks every sample, not only sparse ones (live lines begin as single points). */
  markPoints?: boolean;
  /** Called with the dragged x-range; without it, dragging does nothing. */
  onZoom?: (start: number, end: number) => void;
  /** Called with the plotting width in CSS pixels, to ask the server for as many points as fit. */
  onWidth?: (width: number) => void;
  /** Extra attributes for tests and tools (`data-*`). */
  attributes?: Record<string, string | number>;
}

/** A uPlot time-series chart that redraws in place when its data changes. */
export function TimeChart({ data, height = 240, testId, xRange, yLabel, seriesLabels, markPoints = false, onZoom, onWidth, attributes }: TimeChartProps) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  // Read by uPlot's range callback, so a new range applies without rebuilding the chart.
  const range = useRef(xRange);
  range.current = xRange;
  const zoom = useRef(onZoom);
  zoom.current = onZoom;
  const width = useRef(onWidth);
  width.current = onWidth;
  const seriesKey = data.series.map((key) => `${key}\u0001${seriesLabels?.[key] ?? ''}`).join('\u0000');

  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 320),
      height,
      series: [{}, ...data.series.map((key, i) => ({ label: seriesLabels?.[key] ?? key, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, ...(markPoints ? { points: { show: true, size: 5 } } : {}) }))],
      axes: [{}, { size: 60, label: yLabel }],
      // Dragging selects a range that the page asks the server for, instead of uPlot zooming into the points it has.
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 3) return;
            const start = u.posToVal(u.select.left, 'x');
            const end = u.posToVal(u.select.left + u.select.width, 'x');
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            zoom.current?.(start, end);
          },
        ],
      },
      scales: {
        x: {
          time: true,
          range: (_u, min, max) => {
            const wanted = range.current;
            if (wanted) return wanted;
            // A single sample would otherwise stretch the axis over years.
            return min === max ? [min - 60, max + 60] : [min, max];
          },
        },
      },
    };
    plot.current = new uPlot(options, data.columns, element);
    width.current?.(plot.current.bbox.width / devicePixelRatio);
    const resize = new ResizeObserver(() => {
      plot.current?.setSize({ width: Math.max(element.clientWidth, 320), height });
      if (plot.current) width.current?.(plot.current.bbox.width / devicePixelRatio);
    });
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = undefined;
    };
    // The chart is rebuilt only when the set of lines changes; new points go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [seriesKey, height, yLabel, markPoints]);

  useEffect(() => {
    plot.current?.setData(data.columns);
  }, [data]);

  useEffect(() => {
    // A new range must redraw even when the data did not change (a zoom into an empty stretch).
    if (plot.current && xRange) plot.current.setScale('x', { min: xRange[0], max: xRange[1] });
  }, [xRange?.[0], xRange?.[1]]); // eslint-disable-line react-hooks/exhaustive-deps

  const dataAttributes = Object.fromEntries(Object.entries(attributes ?? {}).map(([k, v]) => [`data-${k}`, v]));
  return <div className="chart" ref={host} data-testid={testId} data-points={data.columns[0]?.length ?? 0} {...dataAttributes} />;
}

/** Aligns (time, series, value) samples into chart columns, oldest first, one line per series key (sorted). */
export function toChartData(samples: Array<{ time: number; series: string; value: number }>): ChartData {
  const series = [...new Set(samples.map((s) => s.series))].sort();
  const lines = new Map(series.map((key, i) => [key, i]));
  const times = [...new Set(samples.map((s) => s.time))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns: (number | null)[][] = series.map(() => times.map(() => null));
  for (const s of samples) columns[lines.get(s.series)!][index.get(s.time)!] = s.value;
  return { series, columns: [times, ...columns] as uPlot.AlignedData };
}
