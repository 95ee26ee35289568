import fs from 'node:fs';
import path from 'node:path';
import type { Platform } from './platform';
import { ScenarioResult } from './report';

/** What every scenario gets. */
export interface BenchContext {
  /** Seconds and tiny sizes, no speed targets judged: for CI, so benchmarks never rot. */
  smoke: boolean;
  /** Profile the service under test (`node --cpu-prof`) and put its hottest functions in the notes. */
  profile: boolean;
  log(line: string): void;
  /**
   * The platform shared by the run's scenarios (started on first use: a
   * private nats-server, a database, the services as child processes).
   * Scenarios keep to their own tenants so they do not see each other's data.
   */
  platform(): Promise<Platform>;
}

/** One benchmark scenario. */
export interface Scenario {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<ScenarioResult>;
}

/**
 * A fresh result of `scenario` run with `parameters`; the scenario pushes its figures and notes into
 * `result.figures` / `result.notes` as it measures, so a failure part-way still reports what it had.
 */
export function emptyResult(scenario: Pick<Scenario, 'name' | 'title'>, parameters: Record<string, unknown>): ScenarioResult {
  return { scenario: scenario.name, title: scenario.title, parameters, figures: [], notes: [] };
}

/** Node options that make a child write a CPU profile into `dir` when it exits. */
export function cpuProfileArgs(dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/**
 * The hottest functions (self time) of the `.cpuprofile` files in `dir`, as
 * lines `12.3%  functionName  file:line`, plus the share per package/area.
 */
export function summarizeCpuProfiles(dir: string, top = 12): string[] {
  if (!fs.existsSync(dir)) return [];
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const selfByFrame = new Map<string, number>();
  const selfByArea = new Map<string, number>();
  let total = 0;
  let used = 0;
  for (const file of files) {
    const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    // Threads that only ever idle (tsx's module loader thread) would dilute the shares: skip them.
    const idleSamples = profile.samples.filter((id) => byId.get(id)?.callFrame.functionName === '(idle)').length;
    if (idleSamples > 0.99 * profile.samples.length) continue;
    used++;
    profile.samples.forEach((id, i) => {
      const node = byId.get(id);
      if (!node) return;
      const dt = profile.timeDeltas[i] ?? 0;
      total += dt;
      const { functionName, url, lineNumber } = node.callFrame;
      const short = url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/').replace(/^.*\/(services|gen|simulator|bench|testing)\//, '$1/');
      const key = `${functionName || '(anonymous)'}  ${short || '(native)'}${url ? `:${lineNumber + 1}` : ''}`;
      selfByFrame.set(key, (selfByFrame.get(key) ?? 0) + dt);
      const area = !url
        ? functionName === '(garbage collector)' ? 'garbage collection' : functionName === '(idle)' ? 'idle' : functionName === '(program)' ? 'V8/native (program)' : 'native'
        : short.startsWith('node_modules/')
          ? short.split('/').slice(0, short.split('/')[1].startsWith('@') ? 3 : 2).join('/')
          : short.startsWith('node:')
            ? 'node core'
            : short.split('/').slice(0, 3).join('/');
      selfByArea.set(area, (selfByArea.get(area) ?? 0) + dt);
    });
  }
  if (total === 0) return [];
  const pct = (v: number) => `${((100 * v) / total).toFixed(1).padStart(5)}%`;
  const busy = total - (selfByArea.get('idle') ?? 0);
  const lines = [`CPU profile (${used} thread(s), ${(total / 1e6).toFixed(1)} s sampled, ${((100 * busy) / total).toFixed(0)}% busy) — by area:`];
  for (const [area, v] of [...selfByArea.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10)) lines.push(`  ${pct(v)}  ${area}`);
  lines.push('hottest functions (self time):');
  for (const [frame, v] of [...selfByFrame.entries()].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(v)}  ${frame}`);
  return lines;
}
