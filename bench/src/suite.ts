import fs from 'node:fs';
import path from 'node:path';
import { Platform, PlatformNeeds } from './platform';
import { RUN_DIR } from './processes';
import { ScenarioResult } from './report';
import { BenchContext, cpuProfileArgs, emptyResult, Scenario, summarizeCpuProfiles } from './scenario';
import { connectionsScenario } from './scenarios/connections';
import { deviceListScenario } from './scenarios/device-list';
import { fanoutScenario } from './scenarios/fanout';
import { historyScenario } from './scenarios/history';
import { ingestScaleScenario, ingestScenario } from './scenarios/ingest';
import { liveScenario } from './scenarios/live';
import { soakScenario } from './scenarios/soak';
import { unaryScenario } from './scenarios/unary';

/** The scenarios `npm run bench` runs when none is named, in that order. */
export const DEFAULT_SCENARIOS: Scenario[] = [ingestScenario, ingestScaleScenario, liveScenario, unaryScenario, historyScenario, connectionsScenario, fanoutScenario, deviceListScenario];

/** Every scenario: the default ones, then those run only when named (the soak takes ten minutes). */
export const SCENARIOS: Scenario[] = [...DEFAULT_SCENARIOS, soakScenario];

/** Where CPU profiles of the services go when profiling. */
export const PROFILE_DIR = path.join(RUN_DIR, 'profiles');

/** The processes of the shared platform, each profiled on its own when profiling. */
const PROFILED = ['signing', 'device', 'monitoring', 'gateway'] as const;

/** What the shared platform runs. */
export function platformNeeds(profile: boolean): PlatformNeeds {
  return {
    signing: true,
    device: true,
    monitoring: true,
    gateway: true,
    nodeArgs: profile ? Object.fromEntries(PROFILED.map((name) => [name, cpuProfileArgs(path.join(PROFILE_DIR, name))])) : {},
  };
}

/**
 * Runs the named scenarios (the default ones when none are named) one after another on
 * one shared platform. A scenario that throws yields a result with `error`
 * set; the others still run. With `profile`, the services' CPU profiles are
 * summarised after the platform stops (`profileSummary`).
 */
export async function runScenarios(
  names: string[],
  options: Omit<BenchContext, 'platform'>,
  onResult?: (result: ScenarioResult) => void,
): Promise<ScenarioResult[] & { profileSummary?: Record<string, string[]> }> {
  const chosen = names.length === 0 ? DEFAULT_SCENARIOS : SCENARIOS.filter((s) => names.includes(s.name));
  const results: ScenarioResult[] & { profileSummary?: Record<string, string[]> } = [];
  let shared: Promise<Platform> | undefined;
  const ctx: BenchContext = { ...options, platform: () => (shared ??= Platform.start(platformNeeds(options.profile))) };
  const stopShared = async () => {
    if (shared) await (await shared.catch(() => undefined))?.stop();
  };
  // Ctrl-C or SIGTERM: stop the child processes before leaving (a second signal exits at once).
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) process.exit(130);
    options.log('stopping the platform…');
    void stopShared().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await runEach(chosen, ctx, results, onResult);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await stopShared();
  }
  if (options.profile) results.profileSummary = Object.fromEntries(PROFILED.map((name) => [name, summarizeCpuProfiles(path.join(PROFILE_DIR, name))]));
  // The services' logs are kept only when something failed (the error names the folder), and profiles when asked for.
  if (results.some((r) => r.error)) options.log(`service logs kept in ${RUN_DIR}`);
  else if (options.profile) options.log(`CPU profiles (.cpuprofile, open in Chrome DevTools) kept in ${PROFILE_DIR}`);
  else fs.rmSync(RUN_DIR, { recursive: true, force: true });
  return results;
}

async function runEach(chosen: Scenario[], ctx: BenchContext, results: ScenarioResult[], onResult?: (result: ScenarioResult) => void): Promise<void> {
  for (const scenario of chosen) {
    ctx.log(`${scenario.name}: ${scenario.title}${ctx.smoke ? ' (smoke)' : ''}`);
    const started = Date.now();
    let result: ScenarioResult;
    try {
      result = await scenario.run(ctx);
    } catch (err) {
      result = { ...emptyResult(scenario, {}), error: (err as Error).message };
    }
    result.seconds = (Date.now() - started) / 1000;
    result.smoke = ctx.smoke;
    results.push(result);
    onResult?.(result);
  }
}
