import { DEFAULT_SCENARIOS, SCENARIOS, runScenarios } from '../src/suite';
import { renderResult, ScenarioResult } from '../src/report';

/**
 * Every benchmark scenario in smoke mode (seconds, tiny sizes, no speed
 * targets judged) against the real platform, so the benchmarks never rot:
 * each must run to the end and produce its figures. The scenarios kept out
 * of the default run (the soak) are named, so they run too.
 */
describe('benchmarks (smoke)', () => {
  let results: ScenarioResult[];

  beforeAll(async () => {
    results = await runScenarios(SCENARIOS.map((s) => s.name), { smoke: true, profile: false, log: () => undefined });
  }, 300_000);

  it('runs every scenario', () => {
    expect(results.map((r) => r.scenario)).toEqual(SCENARIOS.map((s) => s.name));
  });

  it('keeps the soak out of the default run', () => {
    expect(SCENARIOS.map((s) => s.name)).toContain('soak');
    expect(DEFAULT_SCENARIOS.map((s) => s.name)).not.toContain('soak');
  });

  it.each(SCENARIOS.map((s) => s.name))('%s finishes with figures and no error', (name) => {
    const result = results.find((r) => r.scenario === name)!;
    expect(result.error).toBeUndefined();
    expect(result.figures.length).toBeGreaterThan(0);
    for (const f of result.figures) {
      expect(Number.isFinite(f.value)).toBe(true);
      if (f.baseline) expect(Number.isFinite(f.baselineValue)).toBe(true);
      // Smoke runs judge no speed target.
      expect(f.met).toBeUndefined();
    }
    expect(renderResult(result)).toContain(name);
  });
});
