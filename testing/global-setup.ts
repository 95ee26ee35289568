import fs from 'node:fs';
import path from 'node:path';
import { startNatsServer, startPostgres, startRedis } from '../scripts/local-servers';
import { preflightOrExit } from '../scripts/preflight';
import { portAnswers } from '../scripts/up-wait';
import { TestLauncher } from './server-launcher';
import { STANDARD_SERVICES, TEST_SERVICE_VARIABLES, testServiceEnv } from './test-services';

/** Where the global teardown finds the private servers (same process as the setup). */
const KEY = Symbol.for('iot-mesh.test-servers');

type Server = keyof typeof STANDARD_SERVICES;

/**
 * jest globalSetup: checks the server programs are installed (installing them
 * as root, else stopping with the command to run), then makes sure each of
 * PostgreSQL, Redis and NATS answers for the test files: a URL already in
 * TEST_DATABASE_URL / TEST_REDIS_URL / TEST_NATS_URL is kept; else the
 * standard server on 127.0.0.1 is used when it answers (unless
 * IOT_TEST_STANDARD_SERVICES=off); else a private one is started from the
 * installed binaries, once for the whole run. The URLs reach the test files
 * through those variables (workers inherit this process's environment), and
 * DATABASE_URL, REDIS_URL and NATS_URL are set to the same servers, so a
 * service process a test spawns with its environment finds them too.
 */
export default async function globalSetup(): Promise<void> {
  const launcher = await prepareTestServers();
  if (launcher) (globalThis as Record<symbol, unknown>)[KEY] = launcher;
}

/**
 * What {@link globalSetup} does, returning the launcher of the private
 * servers it started (stop them with its `destroy()`), or undefined.
 */
export async function prepareTestServers(): Promise<TestLauncher | undefined> {
  preflightOrExit(['nats-server', 'postgresql', 'redis-server'], { who: 'npm test' });
  const useStandard = process.env.IOT_TEST_STANDARD_SERVICES !== 'off';
  const wanted: Server[] = [];
  for (const server of Object.keys(STANDARD_SERVICES) as Server[]) {
    const variable = TEST_SERVICE_VARIABLES[server];
    if (process.env[variable]) continue;
    if (useStandard && (await portAnswers(STANDARD_SERVICES[server].port))) process.env[variable] = STANDARD_SERVICES[server].url;
    else wanted.push(server);
  }
  const launcher = wanted.length > 0 ? await startPrivate(wanted) : undefined;
  Object.assign(process.env, testServiceEnv());
  return launcher;
}

/** Starts the private servers and points their TEST_* variables at them. */
async function startPrivate(wanted: Server[]): Promise<TestLauncher> {
  const launcher = new TestLauncher();
  // PostgreSQL runs as the postgres user when we are root: it must reach its folder.
  fs.chmodSync(launcher.dir, 0o755);
  const timeoutMs = 60_000;
  const started = await launcher
    .explain(() =>
      Promise.all(
        wanted.map(async (server) => {
          const dir = path.join(launcher.dir, server);
          if (server === 'postgres') return [server, (await startPostgres(launcher, { dir, timeoutMs })).adminUrl] as const;
          if (server === 'redis') return [server, (await startRedis(launcher, { dir, timeoutMs })).url] as const;
          return [server, (await startNatsServer(launcher, { dir, serverName: 'iot_test', timeoutMs })).url] as const;
        }),
      ),
    )
    .catch(async (err) => {
      await launcher.destroy();
      throw err;
    });
  for (const [server, url] of started) process.env[TEST_SERVICE_VARIABLES[server]] = url;
  process.stderr.write(`\nprivate test servers (${launcher.dir}): ${started.map(([s, url]) => `${s} ${url}`).join(', ')}\n`);
  return launcher;
}

/** jest globalTeardown: stops the private servers the setup started. */
export async function stopTestServers(): Promise<void> {
  const launcher = (globalThis as Record<symbol, unknown>)[KEY] as TestLauncher | undefined;
  if (!launcher) return;
  delete (globalThis as Record<symbol, unknown>)[KEY];
  await launcher.destroy();
}
