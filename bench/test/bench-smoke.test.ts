import { SCENARIOS, runScenarios } from '../src/suite';
import { renderResult, ScenarioResult } from '../src/report';

/**
 * Every benchmark scenario in smoke mode (seconds, tiny sizes, no speed
 * targets judged) against the real platform, so the benchmarks never rot:
 * each must run to the end and produce its figures.
 */
describe('benchmarks (smoke)', () => {
  let results: ScenarioResult[];

  beforeAll(async () => {
    results = await runScenarios([], { smoke: true, profile: false, log: () => undefined });
  }, 240_000);

  it('runs every scenario', () => {
    expect(results.map((r) => r.scenario)).toEqual(SCENARIOS.map((s) => s.name));
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
