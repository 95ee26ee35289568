import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { renderTable } from '../../simulator/src/stats';

/** One figure of a scenario, next to the baseline measured in the same run. */
export interface Figure {
  /** What was measured: `points/s committed`, `p99 (ms)`. */
  measure: string;
  value: number;
  unit: string;
  /** The baseline this figure is compared with, e.g. `raw COPY`. */
  baseline?: string;
  baselineValue?: number;
  /** How the target reads, e.g. `≥ 0.5 × raw COPY`, `p99 ≤ 50 ms`. */
  target?: string;
  /** Whether the target was met; undefined when there is no target (or smoke mode). */
  met?: boolean;
}

/** One point of a scaling curve: `y` of `series` at `x`. */
export interface CurvePoint {
  series: string;
  x: number;
  y: number;
}

/** A scaling curve (e.g. history p95 against the range queried): printed as a table, plotted in the report. */
export interface Curve {
  /** File-name part: `history-p95`. */
  name: string;
  title: string;
  xLabel: string;
  yLabel: string;
  /** Plot x on a log scale (sizes that grow by ×10). */
  logX?: boolean;
  points: CurvePoint[];
}

/** The outcome of one scenario. */
export interface ScenarioResult {
  scenario: string;
  title: string;
  /** Sizes and settings the scenario ran with. */
  parameters: Record<string, unknown>;
  figures: Figure[];
  /** Free-form lines: where time goes, what was skipped and why. */
  notes: string[];
  /** Scaling curves measured by the scenario. */
  curves?: Curve[];
  /** Seconds the scenario took. */
  seconds?: number;
  smoke?: boolean;
  /** Set when the scenario could not run; figures may be partial. */
  error?: string;
}

/** Where this run happened. */
export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGb: number;
  node: string;
  os: string;
  /** Load averages (1, 5, 15 min) when the run started and ended. */
  loadAtStart: number[];
  loadAtEnd?: number[];
  postgres?: string;
  natsServer?: string;
}

export function machineInfo(): MachineInfo {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGb: Math.round(os.totalmem() / 1024 ** 3),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    loadAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** `12,345`, `0.51`, `3.2`: few significant digits, thousands separated. */
export function formatNumber(n: number | undefined): string {
  if (n === undefined || Number.isNaN(n)) return '–';
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  if (abs >= 100) return Math.round(n).toLocaleString('en-US');
  if (abs >= 10) return n.toFixed(1);
  if (abs >= 1) return n.toFixed(2);
  return n.toPrecision(2);
}

/** The ratio value / baseline, when both exist. */
export function ratio(f: Figure): number | undefined {
  return f.baselineValue ? f.value / f.baselineValue : undefined;
}

/** A curve as rows: a header (x label, then one column per series) and one row per x. */
export function curveRows(curve: Curve): string[][] {
  const series = [...new Set(curve.points.map((p) => p.series))];
  const xs = [...new Set(curve.points.map((p) => p.x))].sort((a, b) => a - b);
  const rows = [[curve.xLabel, ...series.map((s) => `${s} (${curve.yLabel})`)]];
  for (const x of xs) rows.push([formatNumber(x), ...series.map((s) => formatNumber(curve.points.find((p) => p.series === s && p.x === x)?.y))]);
  return rows;
}

/** A curve as a Markdown table. */
export function markdownCurve(curve: Curve): string {
  const [header, ...rows] = curveRows(curve);
  return [`**${curve.title}**`, '', `| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** A scenario's figures as a text table. */
export function renderResult(result: ScenarioResult): string {
  const rows: string[][] = [['measure', 'value', 'baseline (same run)', 'ratio', 'target', 'met']];
  for (const f of result.figures) {
    const r = ratio(f);
    rows.push([
      f.measure,
      `${formatNumber(f.value)} ${f.unit}`.trim(),
      f.baseline ? `${f.baseline}: ${formatNumber(f.baselineValue)} ${f.unit}`.trim() : '',
      r === undefined ? '' : `${r.toFixed(2)}×`,
      f.target ?? '',
      f.met === undefined ? '' : f.met ? 'yes' : 'NO',
    ]);
  }
  const header = `== ${result.scenario}: ${result.title}${result.smoke ? ' (smoke)' : ''}${result.seconds ? ` — ${result.seconds.toFixed(0)} s` : ''}`;
  const lines = [header, renderTable(rows)];
  for (const curve of result.curves ?? []) lines.push(`-- ${curve.title}`, renderTable(curveRows(curve)));
  if (result.error) lines.push(`ERROR: ${result.error}`);
  for (const note of result.notes) lines.push(`  · ${note}`);
  return lines.join('\n');
}

/** A Markdown table of every scenario, for the README. */
export function markdownSummary(results: ScenarioResult[]): string {
  const lines = ['| scenario | measure | value | baseline (same run) | ratio | target | met |', '|---|---|---|---|---|---|---|'];
  for (const result of results) {
    for (const f of result.figures) {
      const r = ratio(f);
      lines.push(
        `| ${result.scenario} | ${f.measure} | ${formatNumber(f.value)} ${f.unit} | ${f.baseline ? `${f.baseline}: ${formatNumber(f.baselineValue)} ${f.unit}` : ''} | ${r === undefined ? '' : `${r.toFixed(2)}×`} | ${f.target ?? ''} | ${f.met === undefined ? '' : f.met ? 'yes' : '**no**'} |`,
      );
    }
    if (result.error) lines.push(`| ${result.scenario} | error: ${result.error.replace(/\|/g, '/')} | | | | | |`);
  }
  for (const curve of results.flatMap((r) => r.curves ?? [])) lines.push('', markdownCurve(curve));
  return lines.join('\n');
}

/** The folder results are written to (gitignored JSON files). */
export const RESULTS_DIR = path.resolve(__dirname, '..', 'results');

/** Writes one scenario's result (and the machine it ran on) as JSON; returns the file path. */
export function writeResult(result: ScenarioResult, machine: MachineInfo, dir = RESULTS_DIR): string {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(dir, `${result.scenario}${result.smoke ? '-smoke' : ''}-${stamp}.json`);
  fs.writeFileSync(file, JSON.stringify({ ...result, machine, writtenAt: new Date().toISOString() }, null, 2) + '\n');
  return file;
}
