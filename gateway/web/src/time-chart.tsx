import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** One line per metric over shared timestamps (seconds), as uPlot takes them. */
export interface ChartData {
  metrics: string[];
  /** [timestamps, ...one value array per metric] */
  columns: uPlot.AlignedData;
}

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04'];

/** A uPlot time-series chart that redraws in place when its data changes. */
export function TimeChart({ data, height = 240, testId, xRange }: { data: ChartData; height?: number; testId?: string; xRange?: [number, number] }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  // Read by uPlot's range callback, so a new range applies without rebuilding the chart.
  const range = useRef(xRange);
  range.current = xRange;
  const seriesKey = data.metrics.join('\u0000');

  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 320),
      height,
      series: [{}, ...data.metrics.map((metric, i) => ({ label: metric, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
      axes: [{}, { size: 60 }],
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
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(element.clientWidth, 320), height }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = undefined;
    };
    // The chart is rebuilt only when the set of lines changes; new points go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [seriesKey, height]);

  useEffect(() => {
    plot.current?.setData(data.columns);
  }, [data]);

  return <div className="chart" ref={host} data-testid={testId} data-points={data.columns[0]?.length ?? 0} />;
}

/** Aligns (time, metric, value) samples into chart columns, oldest first. */
export function toChartData(samples: Array<{ time: number; metric: string; value: number }>): ChartData {
  const metrics = [...new Set(samples.map((s) => s.metric))].sort();
  const times = [...new Set(samples.map((s) => s.time))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns: (number | null)[][] = metrics.map(() => times.map(() => null));
  for (const s of samples) columns[metrics.indexOf(s.metric)][index.get(s.time)!] = s.value;
  return { metrics, columns: [times, ...columns] as uPlot.AlignedData };
}
