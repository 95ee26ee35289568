import fs from 'node:fs';
import path from 'node:path';
import * as vega from 'vega';
import { compile, TopLevelSpec } from 'vega-lite';
import { Curve, curveRows, formatNumber, MachineInfo, ratio, RESULTS_DIR, ScenarioResult } from './report';

/** A curve as a Vega-Lite line chart: one line per series, points marked. */
function curveSpec(curve: Curve): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: curve.title,
    width: 420,
    height: 240,
    data: { values: curve.points },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: curve.xLabel, scale: curve.logX ? { type: 'log' } : { zero: false } },
      y: { field: 'y', type: 'quantitative', title: curve.yLabel },
      color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom' } },
    },
  };
}

/** Renders a curve to SVG server-side (Vega's headless view; no browser, no canvas). */
export async function curveSvg(curve: Curve): Promise<string> {
  const view = new vega.View(vega.parse(compile(curveSpec(curve)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

function htmlTable(rows: string[][]): string {
  const [header, ...body] = rows;
  return `<table><thead><tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${body
    .map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

/**
 * Writes the run's report next to its JSON results: one SVG per scaling
 * curve and an HTML page with every scenario's figures, curve tables and
 * plots. Returns the HTML file's path (undefined when nothing was measured).
 */
export async function writeHtmlReport(results: ScenarioResult[], machine: MachineInfo, dir = RESULTS_DIR): Promise<string | undefined> {
  if (results.length === 0) return undefined;
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const sections: string[] = [];
  for (const result of results) {
    const figures = htmlTable([
      ['measure', 'value', 'baseline (same run)', 'ratio', 'target', 'met'],
      ...result.figures.map((f) => {
        const r = ratio(f);
        return [f.measure, `${formatNumber(f.value)} ${f.unit}`, f.baseline ? `${f.baseline}: ${formatNumber(f.baselineValue)} ${f.unit}` : '', r === undefined ? '' : `${r.toFixed(2)}×`, f.target ?? '', f.met === undefined ? '' : f.met ? 'yes' : 'NO'];
      }),
    ]);
    const curves: string[] = [];
    for (const curve of result.curves ?? []) {
      const svg = await curveSvg(curve);
      fs.writeFileSync(path.join(dir, `${curve.name}-${stamp}.svg`), svg);
      curves.push(`<figure>${svg}<figcaption>${htmlTable(curveRows(curve))}</figcaption></figure>`);
    }
    sections.push(
      `<section><h2>${escapeHtml(result.scenario)}: ${escapeHtml(result.title)}${result.smoke ? ' (smoke)' : ''}</h2>${result.error ? `<p class="error">ERROR: ${escapeHtml(result.error)}</p>` : ''}${figures}${curves.join('')}<ul>${result.notes
        .map((n) => `<li>${escapeHtml(n)}</li>`)
        .join('')}</ul></section>`,
    );
  }
  const file = path.join(dir, `report-${stamp}.html`);
  fs.writeFileSync(
    file,
    `<!doctype html><html><head><meta charset="utf-8"><title>iot-mesh bench ${stamp}</title><style>body{font-family:sans-serif;max-width:70em;margin:1em auto}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}figure{display:inline-block;margin:1em}.error{color:#b00}</style></head><body><h1>iot-mesh bench</h1><p>${escapeHtml(
      `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB, node ${machine.node}; load average at start ${machine.loadAtStart.join(' ')}`,
    )}</p>${sections.join('')}</body></html>\n`,
  );
  return file;
}
