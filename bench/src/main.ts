/**
 * `npm run bench [scenario…] [-- --smoke] [-- --profile]`: runs the benchmark
 * scenarios (by default all but the soak, which runs only when named),
 * prints a table per scenario with every figure next to a baseline
 * measured in the same run, and writes JSON results under
 * bench/results/, with an HTML report (scaling curves as SVG plots) next to
 * them. BENCH_SMOKE=1 (or --smoke) runs seconds-long, tiny versions
 * with no targets judged; BENCH_PROFILE=1 (or --profile) CPU-profiles the
 * service under test and lists its hottest functions.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { writeHtmlReport } from './plots';
import { machineInfo, markdownSummary, renderResult, writeResult } from './report';
import { DEFAULT_SCENARIOS, runScenarios, SCENARIOS } from './suite';

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { smoke: { type: 'boolean' }, profile: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, markdown: { type: 'boolean' } },
  });
  if (values.help) {
    process.stdout.write(`Usage: npm run bench [scenario…] [-- --smoke --profile --markdown]\nScenarios: ${SCENARIOS.map((s) => `${s.name} (${s.title})${DEFAULT_SCENARIOS.includes(s) ? '' : ' — only when named'}`).join('\n           ')}\n`);
    return 0;
  }
  const unknown = positionals.filter((p) => !SCENARIOS.some((s) => s.name === p));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown scenario ${unknown.join(', ')}; one of ${SCENARIOS.map((s) => s.name).join(', ')}\n`);
    return 2;
  }
  const smoke = !!values.smoke || process.env.BENCH_SMOKE === '1';
  const profile = !!values.profile || process.env.BENCH_PROFILE === '1';
  if (profile) process.env.BENCH_PROFILE = '1';
  const machine = machineInfo();
  process.stdout.write(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB, ${machine.os}, node ${machine.node}; load average ${machine.loadAtStart.join(' ')}\n\n`);
  const results = await runScenarios(positionals, { smoke, profile, log: (line) => process.stderr.write(`${line}\n`) }, (result) => {
    process.stdout.write(renderResult(result) + '\n\n');
    const file = writeResult(result, { ...machine, loadAtEnd: os.loadavg().map((l) => Math.round(l * 100) / 100) });
    process.stderr.write(`  → ${file}\n`);
  });
  for (const [name, summary] of Object.entries(results.profileSummary ?? {})) if (summary.length) process.stdout.write(`${name} ${summary.join('\n')}\n\n`);
  if (values.markdown) process.stdout.write(markdownSummary(results) + '\n');
  const report = await writeHtmlReport(results, { ...machine, loadAtEnd: os.loadavg().map((l) => Math.round(l * 100) / 100) });
  if (report) process.stderr.write(`report with plots: ${report}\n`);
  process.stdout.write(`load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  return results.some((r) => r.error) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
